// cli_line.c: see cli_line.h. The terminal is put in raw mode (no echo, no canonical line
// discipline, ISIG kept) only while a line is read, and the whole line is redrawn after each
// key: "\r", prompt, the visible part of the text, clear to the end, cursor back in place.
#include "cli_line.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "base/base.h"

enum { HISTORY_MAX = 1000 };

typedef struct {
    char *b;          // the text, NUL-terminated
    size_t len, cap;  // bytes
    size_t pos;       // cursor, a byte offset at a character boundary
} Buf;

static int is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

static size_t prev_char(const Buf *l, size_t at) {
    if (at == 0) return 0;
    at--;
    while (at > 0 && is_cont((unsigned char)l->b[at])) at--;
    return at;
}

static size_t next_char(const Buf *l, size_t at) {
    if (at >= l->len) return l->len;
    at++;
    while (at < l->len && is_cont((unsigned char)l->b[at])) at++;
    return at;
}

// Characters (not bytes) in b[from..to).
static size_t nchars(const char *b, size_t from, size_t to) {
    size_t n = 0;
    for (size_t i = from; i < to; i++) n += !is_cont((unsigned char)b[i]);
    return n;
}

static int set_text(Buf *l, const char *s) {
    size_t n = strlen(s);
    if (n + 1 > l->cap) {
        char *nb = g3_realloc(l->b, n + 64);
        if (!nb) return -1;
        l->b = nb;
        l->cap = n + 64;
    }
    memcpy(l->b, s, n + 1);
    l->len = l->pos = n;
    return 0;
}

static int insert(Buf *l, char c) {
    if (l->len + 2 > l->cap) {
        size_t cap = l->cap * 2 + 64;
        char *nb = g3_realloc(l->b, cap);
        if (!nb) return -1;
        l->b = nb;
        l->cap = cap;
    }
    memmove(l->b + l->pos + 1, l->b + l->pos, l->len - l->pos + 1);
    l->b[l->pos++] = c;
    l->len++;
    return 0;
}

static void erase(Buf *l, size_t from, size_t to) {  // bytes [from, to); the cursor goes to from
    memmove(l->b + from, l->b + to, l->len - to + 1);
    l->len -= to - from;
    l->pos = from;
}

static void put(const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void refresh(const Buf *l, const char *prompt) {
    struct winsize ws;
    int cols = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
    size_t plen = nchars(prompt, 0, strlen(prompt)), room = (size_t)cols > plen + 1 ? (size_t)cols - plen - 1 : 1;
    // scroll sideways so that the cursor is visible: skip characters from the start
    size_t first = 0, cur = nchars(l->b, 0, l->pos);
    while (cur - nchars(l->b, 0, first) >= room) first = next_char(l, first);
    size_t last = first;
    for (size_t k = 0; k < room && last < l->len; k++) last = next_char(l, last);
    char tail[32];
    put("\r", 1);
    put(prompt, strlen(prompt));
    put(l->b + first, last - first);
    put("\x1b[K\r", 4);
    size_t col = plen + cur - nchars(l->b, 0, first);
    if (col > 0) put(tail, (size_t)snprintf(tail, sizeof tail, "\x1b[%zuC", col));
}

// One byte from the terminal: 1, 0 at end of input, -1 on error, -2 when a signal arrived.
static int get(char *c) {
    ssize_t r = read(STDIN_FILENO, c, 1);
    if (r == 1) return 1;
    if (r == 0) return 0;
    return errno == EINTR ? -2 : -1;
}

int cli_line_usable(void) { return isatty(STDIN_FILENO) && isatty(STDERR_FILENO); }

// Replaces the line with history entry idx, after keeping the edited line in the entry it
// leaves (so that going back down finds it).
static int history_go(CliLine *le, Buf *l, int *idx, int to) {
    if (to < 0 || to >= le->nhist) return 0;
    char *keep = g3_strdup(l->b);
    if (!keep) return -1;
    free(le->hist[*idx]);
    le->hist[*idx] = keep;
    *idx = to;
    return set_text(l, le->hist[to]);
}

static int hist_push(CliLine *le, const char *line) {
    if (le->nhist == le->cap) {
        int cap = le->cap * 2 + 16;
        char **nh = g3_realloc(le->hist, (size_t)cap * sizeof *nh);
        if (!nh) return -1;
        le->hist = nh;
        le->cap = cap;
    }
    if (!(le->hist[le->nhist] = g3_strdup(line))) return -1;
    le->nhist++;
    return 0;
}

static int edit(CliLine *le, const char *prompt, Buf *l) {
    // the line being edited is the history's last entry while editing, so Up/Down can leave it
    if (hist_push(le, "")) return CLI_LINE_ERROR;
    int idx = le->nhist - 1, rc = CLI_LINE_ERROR;
    refresh(l, prompt);
    for (;;) {
        char c;
        int g = get(&c);
        if (g <= 0) { rc = g == 0 ? (l->len ? CLI_LINE_OK : CLI_LINE_EOF) : g == -2 ? CLI_LINE_INTERRUPTED : CLI_LINE_ERROR; break; }
        unsigned char u = (unsigned char)c;
        if (u == '\r' || u == '\n') { rc = CLI_LINE_OK; break; }
        if (u == 4) {  // Ctrl-D: end on an empty line, else delete at the cursor
            if (l->len == 0) { rc = CLI_LINE_EOF; break; }
            if (l->pos < l->len) erase(l, l->pos, next_char(l, l->pos));
        } else if (u == 127 || u == 8) {
            if (l->pos > 0) erase(l, prev_char(l, l->pos), l->pos);
        } else if (u == 1) l->pos = 0;
        else if (u == 5) l->pos = l->len;
        else if (u == 2) l->pos = prev_char(l, l->pos);
        else if (u == 6) l->pos = next_char(l, l->pos);
        else if (u == 21) erase(l, 0, l->pos);
        else if (u == 11) erase(l, l->pos, l->len);
        else if (u == 23) {  // Ctrl-W: spaces, then the word before the cursor
            size_t at = l->pos;
            while (at > 0 && l->b[at - 1] == ' ') at--;
            while (at > 0 && l->b[at - 1] != ' ') at--;
            erase(l, at, l->pos);
        } else if (u == 16 || u == 14) {
            if (history_go(le, l, &idx, idx + (u == 16 ? -1 : 1))) break;
        } else if (u == 27) {  // escape sequences: ESC [ X, ESC [ n ~, ESC O X
            char s0, s1, s2;
            if ((g = get(&s0)) <= 0 || (g = get(&s1)) <= 0) { rc = g == -2 ? CLI_LINE_INTERRUPTED : CLI_LINE_ERROR; break; }
            if (s0 == '[' && s1 >= '0' && s1 <= '9') {
                if ((g = get(&s2)) <= 0) { rc = g == -2 ? CLI_LINE_INTERRUPTED : CLI_LINE_ERROR; break; }
                if (s2 == '~') {
                    if (s1 == '3' && l->pos < l->len) erase(l, l->pos, next_char(l, l->pos));
                    else if (s1 == '1' || s1 == '7') l->pos = 0;
                    else if (s1 == '4' || s1 == '8') l->pos = l->len;
                }
            } else if (s0 == '[' || s0 == 'O') {
                if (s1 == 'A' || s1 == 'B') {
                    if (history_go(le, l, &idx, idx + (s1 == 'A' ? -1 : 1))) break;
                } else if (s1 == 'C') l->pos = next_char(l, l->pos);
                else if (s1 == 'D') l->pos = prev_char(l, l->pos);
                else if (s1 == 'H') l->pos = 0;
                else if (s1 == 'F') l->pos = l->len;
            }
        } else if (u >= 0x20) {  // text, UTF-8 bytes included
            if (insert(l, c)) break;
        }
        refresh(l, prompt);
    }
    // drop the entry of the line being edited; the caller adds the accepted line
    free(le->hist[--le->nhist]);
    return rc;
}

int cli_line_read(CliLine *le, const char *prompt, char **out) {
    struct termios orig, raw;
    *out = NULL;
    if (tcgetattr(STDIN_FILENO, &orig) != 0) return CLI_LINE_ERROR;
    raw = orig;
    raw.c_iflag &= ~(tcflag_t)(ICRNL | INLCR | IXON);
    raw.c_lflag &= ~(tcflag_t)(ECHO | ICANON | IEXTEN);  // ISIG stays: Ctrl-C is still SIGINT
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSADRAIN, &raw) != 0) return CLI_LINE_ERROR;  // DRAIN: keys typed ahead are kept
    Buf l = {0};
    int rc = set_text(&l, "") ? CLI_LINE_ERROR : edit(le, prompt, &l);
    tcsetattr(STDIN_FILENO, TCSADRAIN, &orig);
    put("\n", 1);
    if (rc == CLI_LINE_OK) *out = l.b;
    else free(l.b);
    return rc;
}

void cli_line_add_history(CliLine *le, const char *line) {
    if (!line[0] || (le->nhist && !strcmp(le->hist[le->nhist - 1], line))) return;
    if (le->nhist == HISTORY_MAX) {
        free(le->hist[0]);
        memmove(le->hist, le->hist + 1, (size_t)--le->nhist * sizeof *le->hist);
    }
    hist_push(le, line);  // out of memory: the line is not remembered, nothing worse
}

void cli_line_free(CliLine *le) {
    for (int i = 0; i < le->nhist; i++) free(le->hist[i]);
    free(le->hist);
    memset(le, 0, sizeof *le);
}
