// page.c: the chat page served at / (page.html, built into the program with .incbin, so the
// binary needs no file at run time and the page needs no network: no CDN, no build step).
__asm__(".section .rodata\n"
        ".balign 16\n"
        ".type g3_serve_page_html, @object\n"
        "g3_serve_page_html:\n"
        ".incbin \"src/server/page.html\"\n"
        ".byte 0\n"
        ".size g3_serve_page_html, .-g3_serve_page_html\n"
        ".previous\n");
extern const char g3_serve_page_html[];

const char *srv_page_html(void);
const char *srv_page_html(void) { return g3_serve_page_html; }
