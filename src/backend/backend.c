// backend.c: choosing a backend by name, and the check that turns a missing op into a message.
#include "backend.h"

#include <string.h>

#include "../base/base.h"

int g3_backend_need(const G3Backend *be, const void *op, const char *opname) {
    if (op) return 0;
    return g3_errorf("backend %s has no op '%s'", be->name, opname);
}

#ifdef G3_CUDA
G3Backend *g3_backend_cuda_open(void);  // cuda/backend_cuda.cu
#else
// A build without CUDA (G3_CUDA is defined for every file of a CUDA build, which links
// cuda/backend_cuda.cu's definitions instead).
static G3Backend *g3_backend_cuda_open(void) {
    g3_errorf("cuda: this gemma3 was built without the CUDA backend (build with nvcc present, or make CUDA=1)");
    return NULL;
}
int g3_backend_cuda_devices(void) { return 0; }
const char *g3_backend_cuda_device(G3Backend *be) { return ""; }
int g3_backend_cuda_mem(G3Backend *be, size_t *free_bytes, size_t *total_bytes) {
    *free_bytes = *total_bytes = 0;
    return g3_errorf("cuda: this gemma3 was built without the CUDA backend");
}
double g3_backend_cuda_peak_bf16(G3Backend *be) { return 0; }
size_t g3_backend_cuda_weight_bytes(G3Backend *be) { return 0; }
G3DevSae *g3_dev_sae_new(G3Backend *be, int D, int S, const float *p, const float *m, const float *v, const int64_t *fired) {
    g3_errorf("SAE training on the GPU: this gemma3 was built without the CUDA backend");
    return NULL;
}
int g3_dev_sae_step(G3DevSae *s, const float *x, int n, const G3DevSaeStep *k, G3DevSaeStats *st) {
    return g3_errorf("SAE training on the GPU: this gemma3 was built without the CUDA backend");
}
int g3_dev_sae_get(G3DevSae *s, float *p, float *m, float *v, int64_t *fired) {
    return g3_errorf("SAE training on the GPU: this gemma3 was built without the CUDA backend");
}
void g3_dev_sae_free(G3DevSae *s) {}
#endif

G3Backend *g3_backend_open(const char *name) {
    if (!name || !strcmp(name, "cpu")) return g3_backend_cpu();
    if (!strcmp(name, "cuda")) return g3_backend_cuda_open();
    g3_errorf("unknown device '%s' (cpu or cuda)", name);
    return NULL;
}

void g3_backend_free(G3Backend *be) {
    if (be && be->destroy) be->destroy(be);
}
