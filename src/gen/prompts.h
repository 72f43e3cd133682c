// prompts.h: prompt files for batch generation. Three shapes are accepted:
//
//   {"stories": {"fables": ["...", "..."], "sci-fi": [...]}, "math": {...}}   categorized
//   {"stories": ["...", "..."]}                                 subcategory "default"
//   ["...", "..."]                                               category "default"
//   a text file, one prompt a line (blank lines skipped)         category "default"
//
// A file is JSON if its first non-space byte is '{' or '['. Prompts come out in file order.
// Error messages name the file and the line (JSON syntax) or the category / subcategory / item
// (1-based) that is wrong. Not here: chat templates, tokenization.
#ifndef G3_PROMPTS_H
#define G3_PROMPTS_H

#include <stddef.h>

typedef struct {
    char *category, *subcategory;  // "default" where the file has none
    char *text;                    // NUL-terminated, no NUL inside
    int index_in_subcategory;      // 0-based position within its subcategory
} G3Prompt;

typedef struct {
    G3Prompt *items;  // (n)
    int n;
} G3Prompts;

// Reads path. An empty file gives n = 0 (the caller decides whether that is an error).
int g3_prompts_load(G3Prompts *out, const char *path);
// The same from memory; name is used in messages.
int g3_prompts_parse(G3Prompts *out, const char *text, size_t len, const char *name);
void g3_prompts_free(G3Prompts *p);
// Writes an example categorized prompts file (stories, facts, code, math; two subcategories
// each) atomically.
int g3_prompts_write_sample(const char *path);

#endif
