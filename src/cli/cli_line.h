// cli_line.h: a small line editor for `gemma3 chat` at a terminal: the line is edited in the
// program, not by the terminal's canonical mode, so the arrow keys move the cursor instead of
// reaching the model as escape sequences. Keys: Left/Right (Ctrl-B/F), Home/End (Ctrl-A/E),
// Backspace, Delete, Ctrl-U / Ctrl-K (delete to the start / end), Ctrl-W (the word before the
// cursor), Up/Down (Ctrl-P/N) through the history, Enter, Ctrl-D on an empty line (end).
// Ctrl-C stays a signal (ISIG is kept): the caller's handler sees it and the read returns.
// Cursor movement is by UTF-8 character; each character is taken to be one column wide
// (East Asian wide characters misplace the cursor), and a line wider than the terminal
// scrolls sideways. Not here: completion, multi-line editing, a history file.
#ifndef G3_CLI_LINE_H
#define G3_CLI_LINE_H

typedef struct {
    char **hist;  // accepted lines, oldest first
    int nhist, cap;
} CliLine;

enum { CLI_LINE_OK = 1, CLI_LINE_EOF = 0, CLI_LINE_ERROR = -1, CLI_LINE_INTERRUPTED = -2 };

// Whether the editor can run: stdin and stderr are terminals (the prompt and the line are
// drawn on stderr, where the prompt always went).
int cli_line_usable(void);
// Shows prompt and reads one line (no newline) into *out (malloc'd). Returns CLI_LINE_OK,
// CLI_LINE_EOF (Ctrl-D on an empty line, or end of input), CLI_LINE_INTERRUPTED (a signal
// arrived: the line is dropped), or CLI_LINE_ERROR. The terminal is back in its own mode
// whenever this returns.
int cli_line_read(CliLine *le, const char *prompt, char **out);
// Adds a line to the history (empty lines and a repeat of the last one are not added).
void cli_line_add_history(CliLine *le, const char *line);
void cli_line_free(CliLine *le);

#endif
