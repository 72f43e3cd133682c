// context.cu: a CUDA context of gemma3.c: device choice, its stream and cuBLAS handle,
// device memory and the scratch the ops share. One context per model/state (issue 14: the
// backend is chosen per context, not per process), so nothing here is global.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"

enum { BLAS_WS_BYTES = 32 << 20 };  // cuBLAS's workspace (Hopper wants up to 32 MiB)

extern "C" int g3cu_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // no driver / no device: clear the sticky error, report none
        return 0;
    }
    return n;
}

extern "C" G3Cuda *g3cu_new(int dev) {
    int n = g3cu_device_count();
    if (n == 0) { g3_errorf("cuda: no GPU found (no CUDA device or driver on this machine)"); return NULL; }
    if (dev < 0 || dev >= n) { g3_errorf("cuda: device %d does not exist (%d found)", dev, n); return NULL; }
    G3Cuda *cu = (G3Cuda *)calloc(1, sizeof *cu);
    if (!cu) { g3_errorf("cuda: out of host memory"); return NULL; }
    cu->dev = dev;
    cudaDeviceProp p;
    if (g3cu_check(cudaSetDevice(dev), "set device") || g3cu_check(cudaGetDeviceProperties(&p, dev), "device properties"))
        goto fail;
    snprintf(cu->name, sizeof cu->name, "%.200s (sm_%d%d)", p.name, p.major, p.minor);
    cu->sms = p.multiProcessorCount;
    {  // the decode GEMV's early start (linear.cu); G3_CUDA_PDL=0 turns it off to compare
        const char *e = getenv("G3_CUDA_PDL");
        cu->pdl = p.major >= 9 && !(e && !strcmp(e, "0"));
    }
    cu->smem_optin = (int)p.sharedMemPerBlockOptin;
    {  // the cross-entropy's row in shared memory (train_ops.cu); G3_CUDA_XENT_SMEM=0 reads it from global memory
        const char *e = getenv("G3_CUDA_XENT_SMEM");
        cu->xent_smem = !(e && !strcmp(e, "0"));
    }
    if (g3cu_check(cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking), "stream")) goto fail;
    if (cublasCreate(&cu->blas) != CUBLAS_STATUS_SUCCESS) { g3_errorf("cuda: cuBLAS would not start"); goto fail; }
    if (g3cu_check(cudaMalloc(&cu->blas_ws, BLAS_WS_BYTES), "cuBLAS workspace")) goto fail;
    // DEFAULT_MATH: no TF32 for f32 products unless an op asks for it by compute type
    if (cublasSetStream(cu->blas, cu->stream) != CUBLAS_STATUS_SUCCESS ||
        cublasSetWorkspace(cu->blas, cu->blas_ws, BLAS_WS_BYTES) != CUBLAS_STATUS_SUCCESS ||
        cublasSetMathMode(cu->blas, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS) {
        g3_errorf("cuda: cuBLAS set-up failed");
        goto fail;
    }
    return cu;
fail:
    g3cu_delete(cu);
    return NULL;
}

extern "C" void g3cu_delete(G3Cuda *cu) {
    if (!cu) return;
    if (cu->stream) cudaStreamSynchronize(cu->stream);
    if (cu->blas) cublasDestroy(cu->blas);
    cudaFree(cu->blas_ws);
    cudaFree(cu->scratch);
    if (cu->stream) cudaStreamDestroy(cu->stream);
    free(cu);
}

extern "C" const char *g3cu_device_name(const G3Cuda *cu) { return cu->name; }
extern "C" int g3cu_sm_count(const G3Cuda *cu) { return cu->sms; }
extern "C" void *g3cu_stream(G3Cuda *cu) { return cu->stream; }

extern "C" int g3cu_mem_info(G3Cuda *cu, size_t *free_bytes, size_t *total_bytes) {
    return g3cu_check(cudaMemGetInfo(free_bytes, total_bytes), "memory info");
}

extern "C" void *g3cu_malloc(G3Cuda *cu, size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 1;
    const double t0 = g3cu_prof_on() ? g3cu_prof_now() : 0;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (t0 > 0) g3cu_prof_count("cudaMalloc (host)", g3cu_prof_now() - t0, (double)bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        g3_errorf("cuda: cannot allocate %.1f MiB on %s: %.1f MiB free of %.1f MiB (%s)", bytes / 1048576.0, cu->name,
                  fr / 1048576.0, tot / 1048576.0, cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

extern "C" void g3cu_free(G3Cuda *cu, void *p) {
    if (!p) return;
    const double t0 = g3cu_prof_on() ? g3cu_prof_now() : 0;
    cudaFree(p);  // waits for the device: a free inside a step is a sync
    if (t0 > 0) g3cu_prof_count("cudaFree (host, syncs the device)", g3cu_prof_now() - t0, 0);
}

extern "C" int g3cu_upload(G3Cuda *cu, void *dst, const void *src, size_t bytes) {
    if (g3cu_prof_on()) g3cu_prof_count("upload host -> device (host)", 0, (double)bytes);
    return g3cu_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cu->stream), "upload");
}

extern "C" int g3cu_download(G3Cuda *cu, void *dst, const void *src, size_t bytes) {
    if (g3cu_prof_on()) g3cu_prof_count("download device -> host (then a sync)", 0, (double)bytes);
    if (g3cu_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cu->stream), "download")) return -1;
    return g3cu_sync(cu);
}

extern "C" int g3cu_copy(G3Cuda *cu, void *dst, const void *src, size_t bytes) {
    return g3cu_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cu->stream), "device copy");
}

extern "C" int g3cu_memset(G3Cuda *cu, void *dst, int byte, size_t bytes) {
    return g3cu_check(cudaMemsetAsync(dst, byte, bytes, cu->stream), "memset");
}

extern "C" int g3cu_sync(G3Cuda *cu) {
    const double t0 = g3cu_prof_on() ? g3cu_prof_now() : 0;
    cudaError_t e = cudaStreamSynchronize(cu->stream);
    if (t0 > 0) {  // the host's wait; then the scopes the stream has passed are timed
        g3cu_prof_count("stream sync (host wait)", g3cu_prof_now() - t0, 0);
        g3cu_prof_collect();
    }
    return e == cudaSuccess ? 0 : g3_errorf("cuda: a kernel failed: %s", cudaGetErrorString(e));
}

void *g3cu_scratch(G3Cuda *cu, size_t bytes) {
    if (bytes <= cu->scratch_bytes) return cu->scratch;
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    cudaStreamIsCapturing(cu->stream, &cs);
    if (cs != cudaStreamCaptureStatusNone) {
        g3_errorf("cuda: an op needs %.1f MiB of scratch while a graph is captured (%.1f MiB reserved): call g3cu_reserve first",
                  bytes / 1048576.0, cu->scratch_bytes / 1048576.0);
        return NULL;
    }
    // cudaFree waits for the device, so no queued op still uses the old buffer
    if (g3cu_prof_on()) g3cu_prof_count("scratch grown (a cudaFree + cudaMalloc)", 0, (double)bytes);
    cudaFree(cu->scratch);
    cu->scratch = NULL;
    cu->scratch_bytes = 0;
    void *p = g3cu_malloc(cu, bytes);
    if (!p) return NULL;
    cu->scratch = p;
    cu->scratch_bytes = bytes;
    return p;
}

extern "C" int g3cu_reserve(G3Cuda *cu, size_t bytes) { return g3cu_scratch(cu, bytes) ? 0 : -1; }
