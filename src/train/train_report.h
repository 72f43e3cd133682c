// train_report.h: `gemma3 report RUN_DIR... --html report.html`: one offline page with the
// runs' metrics.jsonl side by side (train_report.html, built into the program): losses by
// step, tokens and time, learning rate, gradient norms, throughput, and per layer the LoRA /
// ReLoRA / rank-1 dynamics (adapter update norms, effective rank of W_t - W_0, rank-1
// direction cosines, merges and the fraction pruned at each).
#ifndef G3_TRAIN_REPORT_H
#define G3_TRAIN_REPORT_H

// Writes the page for runs dirs[n] (each a folder holding metrics.jsonl; names[i] labels it)
// to out, atomically. A line that is not a JSON object (a torn last line, a damaged file) is
// left out and counted on the page; a folder without metrics.jsonl is an error naming it.
// 0 or -1 with a message.
int g3_train_report_html(const char *out, const char *const *dirs, const char *const *names, int n);

#endif
