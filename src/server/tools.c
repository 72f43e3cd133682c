// tools.c: tool calling for Gemma 3, which has no tool tokens: the request's tools are
// described in the prompt (as Google's Gemma function-calling guide does: the function
// definitions as JSON, calls asked for as python-style calls in a ```tool_code block), and the
// answer is read back as calls when it is nothing but calls. The reader is lenient in what it
// accepts (python or JSON calls, fenced or not) and strict in what it returns: only tools
// the request named, arguments as a JSON object; anything else stays text, never an error.
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "srv_internal.h"

// ---- JSON nodes back to text ----

static int json_node_write(SBuf *b, const JsonNode *n, int depth) {
    if (depth > 64) return -1;
    switch (n->type) {
    case JSON_NULL: return sb_puts(b, "null");
    case JSON_TRUE: return sb_puts(b, "true");
    case JSON_FALSE: return sb_puts(b, "false");
    case JSON_NUMBER: return sb_puts(b, n->str);  // the literal as written
    case JSON_STRING: return sb_json_str(b, n->str, n->str_len);
    default: break;
    }
    int obj = n->type == JSON_OBJECT, k = 0;
    if (sb_puts(b, obj ? "{" : "[")) return -1;
    JSON_FOREACH(c, n) {
        if (k++ && sb_puts(b, ", ")) return -1;
        if (obj && (sb_json_str(b, c->key, c->key_len) || sb_puts(b, ": "))) return -1;
        if (json_node_write(b, c, depth + 1)) return -1;
    }
    return sb_puts(b, obj ? "}" : "]");
}

static int name_ok(const char *s, size_t n) {
    if (n == 0 || n > 64) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.') return 0;
    return 1;
}

// ---- the request's tools ----

int srv_tools_parse(const JsonNode *req, SrvTools *t, SrvError *e) {
    memset(t, 0, sizeof *t);
    const JsonNode *tools = json_get(req, "tools"), *choice = json_get(req, "tool_choice");
    const char *forced = NULL;
    if (!json_is_null(choice)) {
        if (json_is_string(choice)) {
            if (!strcmp(choice->str, "none")) t->choice = 1;
            else if (!strcmp(choice->str, "required")) t->choice = 2;
            else if (strcmp(choice->str, "auto")) return srv_err(e, 400, "tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or a function");
        } else {
            const JsonNode *name = json_get(json_get(choice, "function"), "name");
            if (choice->type != JSON_OBJECT || !json_is_string(name))
                return srv_err(e, 400, "tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}");
            t->choice = 2;
            forced = name->str;
        }
    }
    if (json_is_null(tools)) {
        if (t->choice == 2) return srv_err(e, 400, "tool_choice", "'tool_choice' asks for a tool call but there are no 'tools'");
        return 0;
    }
    if (tools->type != JSON_ARRAY) return srv_err(e, 400, "tools", "'tools' must be a list");
    if (tools->count > SRV_MAX_TOOLS) return srv_err(e, 400, "tools", "%u tools; at most %d", tools->count, SRV_MAX_TOOLS);
    SBuf p = {0};
    int bad = sb_puts(&p, "You have access to functions. If you decide to invoke any of the function(s), you MUST put it in the format of\n"
                          "```tool_code\n[func_name1(param_name1=value1, param_name2=value2), func_name2(params)]\n```\n"
                          "You SHOULD NOT include any other text in the response if you call a function. "
                          "The results come back in a ```tool_output block.\n");
    if (t->choice == 2) bad |= forced ? sb_printf(&p, "You MUST call the function %s now.\n", forced) : sb_puts(&p, "You MUST call a function now.\n");
    bad |= sb_puts(&p, "[\n");
    int i = 0;
    JSON_FOREACH(tool, tools) {
        const JsonNode *type = json_get(tool, "type"), *fn = json_get(tool, "function");
        const JsonNode *name = json_get(fn, "name"), *desc = json_get(fn, "description"), *params = json_get(fn, "parameters");
        if (tool->type != JSON_OBJECT || !json_is_string(type) || strcmp(type->str, "function") || !fn || fn->type != JSON_OBJECT) {
            sb_free(&p);
            return srv_err(e, 400, "tools", "tools[%d] must be {\"type\": \"function\", \"function\": {...}}", i);
        }
        if (!json_is_string(name) || !name_ok(name->str, name->str_len)) {
            sb_free(&p);
            return srv_err(e, 400, "tools", "tools[%d].function.name must be 1-64 letters, digits, '_', '-' or '.'", i);
        }
        if ((desc && !json_is_string(desc)) || (params && params->type != JSON_OBJECT)) {
            sb_free(&p);
            return srv_err(e, 400, "tools", "tools[%d].function: 'description' must be a string and 'parameters' an object", i);
        }
        bad |= sb_puts(&p, i ? ",\n  {\"name\": " : "  {\"name\": ") || sb_json_str(&p, name->str, name->str_len);
        if (desc) bad |= sb_puts(&p, ", \"description\": ") || sb_json_str(&p, desc->str, desc->str_len);
        if (params) bad |= sb_puts(&p, ", \"parameters\": ") || json_node_write(&p, params, 0);
        bad |= sb_puts(&p, "}");
        if (!(t->name[t->n++] = g3_strdup(name->str))) bad = 1;
        i++;
    }
    bad |= sb_puts(&p, "\n]");
    if (forced) {
        int found = 0;
        for (int k = 0; k < t->n; k++) found |= !strcmp(t->name[k], forced);
        if (!found) { sb_free(&p); srv_tools_free(t); return srv_err(e, 400, "tool_choice", "'tool_choice' names '%s', which is not in 'tools'", forced); }
    }
    if (bad) { sb_free(&p); srv_tools_free(t); return srv_err(e, 500, NULL, "out of memory"); }
    if (t->choice == 1) sb_free(&p);  // "none": the model is not told about them
    t->prompt = p.p;
    return 0;
}

void srv_tools_free(SrvTools *t) {
    for (int i = 0; i < t->n; i++) free(t->name[i]);
    free(t->prompt);
    memset(t, 0, sizeof *t);
}

void srv_calls_free(SrvToolCall *calls, int n) {
    for (int i = 0; i < n; i++) {
        free(calls[i].name);
        free(calls[i].args);
    }
}

// ---- reading calls ----

typedef struct {
    const char *s, *end;
    const SrvTools *t;
} Rd;

static void ws(Rd *r) {
    while (r->s < r->end && isspace((unsigned char)*r->s)) r->s++;
}

static int known(const SrvTools *t, const char *s, size_t n) {
    for (int i = 0; i < t->n; i++)
        if (strlen(t->name[i]) == n && !memcmp(t->name[i], s, n)) return 1;
    return 0;
}

// Four hex digits at r->s (consumed) into *cp; 0 if they are not there.
static int hex4(Rd *r, unsigned *cp) {
    if (r->end - r->s < 4) return 0;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = r->s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return 0;
        v = v << 4 | (unsigned)d;
    }
    r->s += 4;
    *cp = v;
    return 1;
}

static int put_utf8(SBuf *b, unsigned cp) {
    char o[4];
    int n;
    if (cp < 0x80) { o[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); n = 2; }
    else if (cp < 0x10000) { o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 63)); o[2] = (char)(0x80 | (cp & 63)); n = 3; }
    else { o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 63)); o[2] = (char)(0x80 | (cp >> 6 & 63)); o[3] = (char)(0x80 | (cp & 63)); n = 4; }
    return sb_put(b, o, (size_t)n);
}

// A python literal at r->s as JSON into b: strings ('' or ""), numbers, True/False/None,
// lists, tuples (as lists), dicts with string keys. -1 if it is none of these.
static int py_value(Rd *r, SBuf *b, int depth) {
    ws(r);
    if (r->s >= r->end || depth > 32) return -1;
    char c = *r->s;
    if (c == '"' || c == '\'') {
        SBuf v = {0};
        r->s++;
        int rc = -1;
        while (r->s < r->end && *r->s != c) {
            char x = *r->s++;
            if (x == '\\' && r->s < r->end) {
                char y = *r->s++;
                unsigned cp;
                if (y == 'u' && hex4(r, &cp)) {  // \uXXXX (JSON's escapes, as the prompt shows values)
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        unsigned lo;
                        const char *save = r->s;
                        if (r->end - r->s >= 2 && r->s[0] == '\\' && r->s[1] == 'u' && (r->s += 2, hex4(r, &lo)) && lo >= 0xDC00 && lo <= 0xDFFF)
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        else { r->s = save; cp = 0xFFFD; }
                    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                        cp = 0xFFFD;
                    }
                    if (put_utf8(&v, cp)) { sb_free(&v); return -1; }
                    continue;
                }
                x = y == 'n' ? '\n' : y == 't' ? '\t' : y == 'r' ? '\r' : y == 'b' ? '\b' : y == 'f' ? '\f' : y;
            }
            if (sb_put(&v, &x, 1)) { sb_free(&v); return -1; }
        }
        if (r->s < r->end) {
            r->s++;
            rc = sb_json_str(b, v.p ? v.p : "", v.n);
        }
        sb_free(&v);
        return rc;
    }
    if (c == '[' || c == '(' || c == '{') {
        char close = c == '[' ? ']' : c == '(' ? ')' : '}';
        int dict = c == '{', k = 0;
        r->s++;
        if (sb_puts(b, dict ? "{" : "[")) return -1;
        for (;;) {
            ws(r);
            if (r->s < r->end && *r->s == close) { r->s++; break; }
            if (k && (r->s >= r->end || *r->s++ != ',')) return -1;
            ws(r);
            if (k && r->s < r->end && *r->s == close) { r->s++; break; }  // trailing comma
            if (k++ && sb_puts(b, ", ")) return -1;
            if (dict) {
                ws(r);
                if (r->s >= r->end || (*r->s != '"' && *r->s != '\'')) return -1;
                if (py_value(r, b, depth + 1)) return -1;
                ws(r);
                if (r->s >= r->end || *r->s++ != ':' || sb_puts(b, ": ")) return -1;
            }
            if (py_value(r, b, depth + 1)) return -1;
        }
        return sb_puts(b, dict ? "}" : "]");
    }
    // a word or a number
    const char *w = r->s;
    while (r->s < r->end && (isalnum((unsigned char)*r->s) || strchr("+-._", *r->s))) r->s++;
    size_t n = (size_t)(r->s - w);
    if (n == 4 && (!memcmp(w, "True", 4) || !memcmp(w, "true", 4))) return sb_puts(b, "true");
    if (n == 5 && (!memcmp(w, "False", 5) || !memcmp(w, "false", 5))) return sb_puts(b, "false");
    if (n == 4 && (!memcmp(w, "None", 4) || !memcmp(w, "null", 4))) return sb_puts(b, "null");
    if (n == 0 || n > 64) return -1;
    // a number as JSON writes it: re-parse it through the JSON reader to be sure
    char num[72];
    memcpy(num, w[0] == '+' ? w + 1 : w, w[0] == '+' ? n - 1 : n);
    num[w[0] == '+' ? n - 1 : n] = 0;
    Json j;
    if (json_parse(&j, num, strlen(num))) return -1;
    int ok = json_root(&j)->type == JSON_NUMBER;
    json_free(&j);
    return ok ? sb_puts(b, num) : -1;
}

// name(a=1, b="x") at r->s into one call.
static int py_call(Rd *r, SrvToolCall *call) {
    ws(r);
    const char *w = r->s;
    while (r->s < r->end && (isalnum((unsigned char)*r->s) || *r->s == '_' || *r->s == '-' || *r->s == '.')) r->s++;
    size_t n = (size_t)(r->s - w);
    if (!known(r->t, w, n)) return -1;
    ws(r);
    if (r->s >= r->end || *r->s++ != '(') return -1;
    SBuf a = {0};
    int k = 0;
    if (sb_puts(&a, "{")) return -1;
    for (;;) {
        ws(r);
        if (r->s < r->end && *r->s == ')') { r->s++; break; }
        if (k && (r->s >= r->end || *r->s++ != ',')) goto fail;
        ws(r);
        if (k && r->s < r->end && *r->s == ')') { r->s++; break; }
        const char *key = r->s;
        while (r->s < r->end && (isalnum((unsigned char)*r->s) || *r->s == '_')) r->s++;
        size_t kn = (size_t)(r->s - key);
        ws(r);
        if (!kn || r->s >= r->end || *r->s++ != '=') goto fail;  // positional arguments: not a call we can name
        if ((k++ && sb_puts(&a, ", ")) || sb_json_str(&a, key, kn) || sb_puts(&a, ": ") || py_value(r, &a, 0)) goto fail;
    }
    if (sb_puts(&a, "}")) goto fail;
    if (!(call->name = malloc(n + 1))) goto fail;
    memcpy(call->name, w, n);
    call->name[n] = 0;
    call->args = a.p;
    return 0;
fail:
    sb_free(&a);
    return -1;
}

// {"name": ..., "arguments" | "parameters": {...} or a JSON string of one} into one call.
static int json_call(const SrvTools *t, const JsonNode *o, SrvToolCall *call) {
    const JsonNode *name = json_get(o, "name"), *args = json_get(o, "arguments");
    if (!args) args = json_get(o, "parameters");
    if (o->type != JSON_OBJECT || !json_is_string(name) || !known(t, name->str, name->str_len)) return -1;
    SBuf a = {0};
    if (!args) {
        if (sb_puts(&a, "{}")) return -1;
    } else if (args->type == JSON_OBJECT) {
        if (json_node_write(&a, args, 0)) { sb_free(&a); return -1; }
    } else if (args->type == JSON_STRING) {  // already a JSON text: it must hold an object
        Json j;
        if (json_parse(&j, args->str, args->str_len)) return -1;
        int ok = json_root(&j)->type == JSON_OBJECT && json_node_write(&a, json_root(&j), 0) == 0;
        json_free(&j);
        if (!ok) { sb_free(&a); return -1; }
    } else {
        return -1;
    }
    if (!(call->name = g3_strdup(name->str))) { sb_free(&a); return -1; }
    call->args = a.p;
    return 0;
}

static const char *trim(const char *s, const char *end, const char **e) {
    while (s < end && isspace((unsigned char)*s)) s++;
    while (end > s && isspace((unsigned char)end[-1])) end--;
    *e = end;
    return s;
}

int srv_tool_calls(const SrvTools *t, const char *text, size_t n, SrvToolCall *calls) {
    if (!t || t->n == 0 || t->choice == 1) return 0;
    const char *end, *s = trim(text, text + n, &end);
    // a fenced block: ```info\n ... ``` making up the whole answer
    if (end - s >= 6 && !memcmp(s, "```", 3)) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        if (!nl || memcmp(end - 3, "```", 3) || end - 3 < nl) return 0;
        size_t info = (size_t)(nl - s - 3);
        const char *in = s + 3;
        if (info && !(info == 9 && !memcmp(in, "tool_code", 9)) && !(info == 6 && !memcmp(in, "python", 6)) &&
            !(info == 4 && !memcmp(in, "json", 4)) && !(info == 9 && !memcmp(in, "tool_call", 9)))
            return 0;
        s = trim(nl + 1, end - 3, &end);
    }
    if (s >= end) return 0;
    int nc = 0;
    if (*s == '{' || *s == '[') {  // JSON first
        Json j;
        if (json_parse(&j, s, (size_t)(end - s)) == 0) {
            const JsonNode *root = json_root(&j);
            int ok = 1;
            if (root->type == JSON_OBJECT) {
                ok = json_call(t, root, &calls[nc]) == 0 && ++nc;
            } else if (root->count == 0 || root->count > SRV_MAX_CALLS) {
                ok = 0;
            } else {
                JSON_FOREACH(c, root) if (!(ok = json_call(t, c, &calls[nc]) == 0 && ++nc)) break;
            }
            json_free(&j);
            if (ok) return nc;
            srv_calls_free(calls, nc);
            return 0;
        }
        if (*s == '{') return 0;
    }
    // python style: [call, call] or call, call (or one per line)
    Rd r = {s, end, t};
    int list = *s == '[';
    if (list) r.s++;
    for (;;) {
        if (nc == SRV_MAX_CALLS || py_call(&r, &calls[nc])) goto fail;
        nc++;
        ws(&r);
        if (r.s < r.end && *r.s == ',') { r.s++; continue; }
        if (list) {
            if (r.s >= r.end || *r.s++ != ']') goto fail;
            ws(&r);
        }
        if (r.s == r.end) return nc;
        if (list) goto fail;
    }
fail:
    srv_calls_free(calls, nc);
    return 0;
}

int srv_tool_prefix(const SrvTools *t, const char *text, size_t n) {
    if (!t || t->n == 0 || t->choice == 1) return 0;
    while (n && isspace((unsigned char)*text)) { text++; n--; }
    if (n == 0) return 1;
    if (*text == '[' || *text == '{') return 1;
    if (!memcmp(text, "```", n < 3 ? n : 3)) return 1;
    for (int i = 0; i < t->n; i++) {
        size_t k = strlen(t->name[i]);
        if (!memcmp(text, t->name[i], n < k ? n : k) && (n <= k || text[k] == '(' || isspace((unsigned char)text[k]))) return 1;
    }
    return 0;
}

static int ident(const char *s, size_t n) {
    if (!n || isdigit((unsigned char)s[0])) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_') return 0;
    return 1;
}

int srv_call_render(SBuf *b, const char *name, const char *args_json, size_t args_len) {
    Json j;
    int rc = 0;
    if (json_parse(&j, args_json, args_len) == 0) {
        const JsonNode *o = json_root(&j);
        int py = o->type == JSON_OBJECT;
        if (py) JSON_FOREACH(c, o) py &= ident(c->key, c->key_len);
        if (py) {  // name(a=1, b="x"), as the prompt asks the model to write calls
            int k = 0;
            rc = sb_puts(b, name) || sb_puts(b, "(");
            JSON_FOREACH(c, o) rc |= (k++ && sb_puts(b, ", ")) || sb_put(b, c->key, c->key_len) || sb_puts(b, "=") || json_node_write(b, c, 0);
            rc |= sb_puts(b, ")");
        } else {  // keys python cannot name: the JSON form, which the reader accepts too
            rc = sb_puts(b, "{\"name\": ") || sb_json_str(b, name, strlen(name)) || sb_puts(b, ", \"arguments\": ") ||
                 (o->type == JSON_OBJECT ? json_node_write(b, o, 0) : sb_puts(b, "{}")) || sb_puts(b, "}");
        }
        json_free(&j);
    } else {
        rc = sb_puts(b, name) || sb_puts(b, "()");
    }
    return rc ? -1 : 0;
}
