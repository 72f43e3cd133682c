// cli_image.h: --image FILE on the commands that run the model over a prompt (forward,
// generate, trace, analyze): decode and encode each image through the vision tower
// (vision/vision.h), put the soft tokens at the prompt's placeholder runs, and, for text
// prompts, write those runs where the text says "<start_of_image>" (images first when it
// says nowhere), as Hugging Face's Gemma3Processor does.
#ifndef G3_CLI_IMAGE_H
#define G3_CLI_IMAGE_H

#include "cli.h"
#include "model/forward.h"
#include "tokenizer/tokenizer.h"
#include "vision/vision.h"

#define CLI_IMAGE_OPT(list) \
    {"--image", OPT_LIST, &(list), "a PNG or JPEG image for the prompt's next image run (repeat for several, in prompt order)"}
#define CLI_PAN_SCAN_OPT(flag) \
    {"--pan-and-scan", OPT_FLAG, &(flag), "also show wide or tall images as 2-4 crops (Gemma3ImageProcessor's do_pan_and_scan)"}

// The tower's hook sites for `trace` (vision.h: named like the text model's, "vision.*"); each
// recorded array has the images first: [images, rows, cols] ([images, NP, NH, HD] for q, k,
// v, z; [images, NH, NP, NP] for the scores and the pattern).
typedef struct {
    char name[96];
    int ndim;
    int shape[4];       // shape[0]: images so far
    size_t one;         // floats per image
    float *data;        // [shape[0]][one]
} CliVisArr;
typedef struct {
    const char *const *pats;
    int npat;
    int received;       // scores / pattern sites kept as each patch's attention received (the mean
                        // over the query rows): [images, NH, NP] (analyze --tower)
    int heads;          // the tower's (set when it is loaded)
    CliVisArr *arr;
    int narr;
    int failed;         // out of memory while recording
} CliVisRec;
typedef struct {
    G3Vision v;
    int loaded;     // the tower is loaded (images were given)
    int has_cfg;    // v.cfg holds the model's vision config (a vision model)
    int n;          // images encoded (pan and scan: each file's whole picture, then its crops)
    float **soft;   // [n][tokens * C]
    int nfiles;     // files given
    int *ncrops;    // [nfiles] crops of each (0: none)
    double seconds; // encoding time, all images
} CliImages;

// Loads the vision tower of m when files are given and encodes each (exact: f32 products),
// else reads only the vision config of a multimodal model (to check prompts). 0 or -1 (the
// message names the file: unreadable, not PNG/JPEG, truncated, too large; or the model: no
// vision tower).
// rec (may be NULL) records the tower's sites its patterns name for every image. The tower
// runs on the model's backend (m->be; the CPU when NULL).
// pan_scan (or the model's preprocessor_config.json) adds each wide or tall picture's crops
// after it (vision.h g3_vision_pan_and_scan).
int cli_images_load(CliImages *ci, const G3Model *m, const CliList *files, int exact, int pan_scan, CliVisRec *rec);
// One more image (chat's --image and /image): loads the tower at the first, then encodes the
// file and appends its soft tokens (ci->soft[ci->n - 1]). 0 or -1 (nothing added).
int cli_images_add(CliImages *ci, const G3Model *m, const char *file, int exact);
// Checks the placeholder runs of ids[n] against the images (same count; none without images)
// and registers the soft tokens with slot 0 of s, which reads ids from position 0. 0 or -1.
int cli_images_attach(CliImages *ci, G3State *s, const int32_t *ids, int n);
// Rows per forward call that keep every run of ids[n] whole: n when there are images, else def.
int cli_images_rows(const CliImages *ci, int n, int def);
// Text with images -> ids: text is cut at each "<start_of_image>" (with none, the images come
// first), the pieces encoded (add_bos, parse_special as g3_tok_encode) and each image's run
// written between "\n\n"s; an image with crops gets the processor's text and a run for each.
// The count of markers must equal the files'. -1 or the count.
int cli_images_encode_text(const CliImages *ci, const G3Tokenizer *tok, const char *text, int add_bos, int parse_special, int32_t **ids);
void cli_images_free(CliImages *ci);

// A G3VisionHookFn that records the sites matching r->pats.
void cli_vision_record(void *r, const G3VisionHookEvent *ev);
// Whether a --hooks pattern is for the tower ("vision." ...).
int cli_vision_pattern(const char *pattern);
void cli_vision_rec_free(CliVisRec *r);

#endif
