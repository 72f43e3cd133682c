// prompts.c: prompt files for batch generation (see prompts.h).
#include "prompts.h"

#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/json.h"

void g3_prompts_free(G3Prompts *p) {
    for (int i = 0; i < p->n; i++) {
        free(p->items[i].category);
        free(p->items[i].subcategory);
        free(p->items[i].text);
    }
    free(p->items);
    p->items = NULL;
    p->n = 0;
}

// Appends a copy of one prompt. cap: the items array's capacity, grown by doubling.
static int add(G3Prompts *p, int *cap, const char *cat, const char *sub, const char *text, size_t len, int index) {
    if (p->n == *cap) {
        int nc = *cap ? *cap * 2 : 16;
        G3Prompt *ni = g3_realloc(p->items, (size_t)nc * sizeof *ni);
        if (!ni) return -1;
        p->items = ni;
        *cap = nc;
    }
    G3Prompt *it = &p->items[p->n];
    it->category = g3_strdup(cat);
    it->subcategory = g3_strdup(sub);
    it->text = g3_malloc(len + 1);
    it->index_in_subcategory = index;
    p->n++;  // counted before the checks so that g3_prompts_free releases what was made
    if (!it->category || !it->subcategory || !it->text) return -1;
    memcpy(it->text, text, len);
    it->text[len] = 0;
    return 0;
}

// One list of prompts: every item must be a string without NUL bytes.
static int add_list(G3Prompts *p, int *cap, const JsonNode *arr, const char *name, const char *cat, const char *sub) {
    int i = 0;
    JSON_FOREACH(item, arr) {
        if (!json_is_string(item))
            return g3_errorf("%s: category '%s' / '%s' item %d is not a string", name, cat, sub, i + 1);
        if (memchr(item->str, 0, item->str_len))
            return g3_errorf("%s: category '%s' / '%s' item %d contains a NUL character", name, cat, sub, i + 1);
        if (add(p, cap, cat, sub, item->str, item->str_len, i)) return -1;
        i++;
    }
    return 0;
}

static int parse_json(G3Prompts *p, int *cap, const char *text, size_t len, const char *name) {
    Json j;
    if (json_parse(&j, text, len)) return g3_error_prefix("%s", name);
    const JsonNode *root = json_root(&j);
    int rc = 0;
    if (root->type == JSON_ARRAY) {
        rc = add_list(p, cap, root, name, "default", "default");
    } else {
        JSON_FOREACH(cat, root) {
            if (memchr(cat->key, 0, cat->key_len)) { rc = g3_errorf("%s: a category name contains a NUL character", name); break; }
            if (cat->type == JSON_ARRAY) {
                rc = add_list(p, cap, cat, name, cat->key, "default");
            } else if (cat->type == JSON_OBJECT) {
                JSON_FOREACH(sub, cat) {
                    if (memchr(sub->key, 0, sub->key_len))
                        rc = g3_errorf("%s: category '%s': a subcategory name contains a NUL character", name, cat->key);
                    else if (sub->type != JSON_ARRAY)
                        rc = g3_errorf("%s: category '%s' / '%s' is not a list of prompts", name, cat->key, sub->key);
                    else
                        rc = add_list(p, cap, sub, name, cat->key, sub->key);
                    if (rc) break;
                }
            } else {
                rc = g3_errorf("%s: category '%s' is neither a list of prompts nor an object of such lists", name, cat->key);
            }
            if (rc) break;
        }
    }
    json_free(&j);
    return rc;
}

static int parse_lines(G3Prompts *p, int *cap, const char *text, size_t len, const char *name) {
    int index = 0, line = 1;
    for (size_t pos = 0; pos < len; line++) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len, stop = end;
        if (stop > pos && text[stop - 1] == '\r') stop--;  // CRLF files
        if (memchr(text + pos, 0, stop - pos)) return g3_errorf("%s: line %d contains a NUL byte", name, line);
        int blank = 1;
        for (size_t i = pos; i < stop && blank; i++) blank = strchr(" \t\f\v\r", text[i]) != NULL;
        if (!blank && add(p, cap, "default", "default", text + pos, stop - pos, index++)) return -1;
        pos = end + 1;
    }
    return 0;
}

int g3_prompts_parse(G3Prompts *out, const char *text, size_t len, const char *name) {
    memset(out, 0, sizeof *out);
    size_t i = 0;
    while (i < len && strchr(" \t\r\n\f\v", text[i]) && text[i]) i++;
    int cap = 0, rc;
    if (i < len && (text[i] == '{' || text[i] == '['))
        rc = parse_json(out, &cap, text, len, name);
    else
        rc = parse_lines(out, &cap, text, len, name);
    if (rc) g3_prompts_free(out);
    return rc;
}

int g3_prompts_load(G3Prompts *out, const char *path) {
    memset(out, 0, sizeof *out);
    size_t len;
    char *text = g3_read_file(path, &len);
    if (!text) return -1;
    int rc = g3_prompts_parse(out, text, len, path);
    free(text);
    return rc;
}

static const char sample[] =
    "{\n"
    "  \"stories\": {\n"
    "    \"fables\": [\n"
    "      \"Write a short fable about a fox who learns to share.\",\n"
    "      \"Tell a fable in which a tortoise teaches a hare about patience.\",\n"
    "      \"Write a fable about a lighthouse that was afraid of the dark.\"\n"
    "    ],\n"
    "    \"science fiction\": [\n"
    "      \"Write the opening paragraph of a story set on a generation ship.\",\n"
    "      \"Describe the first conversation between a human and a friendly alien gardener.\"\n"
    "    ]\n"
    "  },\n"
    "  \"facts\": {\n"
    "    \"geography\": [\n"
    "      \"What is the capital of Australia?\",\n"
    "      \"Name the longest river in Africa and the countries it flows through.\"\n"
    "    ],\n"
    "    \"science\": [\n"
    "      \"Why is the sky blue? Answer in two sentences.\",\n"
    "      \"Explain photosynthesis to a ten-year-old.\",\n"
    "      \"What is the difference between a virus and a bacterium?\"\n"
    "    ]\n"
    "  },\n"
    "  \"code\": {\n"
    "    \"python\": [\n"
    "      \"Write a Python function that reverses the words of a sentence.\",\n"
    "      \"Write a Python generator that yields the Fibonacci numbers.\"\n"
    "    ],\n"
    "    \"c\": [\n"
    "      \"Write a C function that counts the set bits of a 32-bit integer.\",\n"
    "      \"Explain what this C code does: for (p = s; *p; p++) n++;\"\n"
    "    ]\n"
    "  },\n"
    "  \"math\": {\n"
    "    \"arithmetic\": [\n"
    "      \"What is 17 times 23? Show your steps.\",\n"
    "      \"A shirt costs 40 dollars after a 20% discount. What was the original price?\"\n"
    "    ],\n"
    "    \"algebra\": [\n"
    "      \"Solve for x: 3x + 7 = 22.\",\n"
    "      \"Factor the polynomial x^2 - 5x + 6.\",\n"
    "      \"If f(x) = 2x^2 - 3, what is f(4)?\"\n"
    "    ]\n"
    "  }\n"
    "}\n";

int g3_prompts_write_sample(const char *path) {
    return g3_write_file_atomic(path, sample, sizeof sample - 1);
}
