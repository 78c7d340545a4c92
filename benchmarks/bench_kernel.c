// Microbenchmark of the fused epoch's first layer: forward (CSR) and gradient + SGD update
// (CSC) on MNIST-like batches (or, at density 1, the dense register-tiled kernels), one
// thread, no Python. Built and run by bench_kernel.py,
// which passes the csrc folder to include (so an older tree can be measured the same way).
//
// Prints, per kernel, the fastest of many repeats in ns and in TSC cycles per (non-zero x 64
// columns), the unit of work of both kernels: one non-zero pixel times one 64-column block.
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <x86intrin.h>

#include "epoch.c"  // the kernels under test are static: included, not linked

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Bytes past a cache line at which every buffer starts: 0, as in the epoch's workspace.
// The build of a first-layer kernel with vectors of this many bytes
static const char *build_name(int bytes) {
    return bytes == 64 ? "AVX-512" : bytes == 32 ? "AVX2" : "16-byte";
}

static size_t misalign = 0;

// zeroed bytes at `misalign` past a 64-byte boundary; never freed
static void *buffer(size_t bytes) {
    char *start = aligned_alloc(64, (bytes + misalign + 63) / 64 * 64);
    if (start == NULL) exit(1);
    memset(start, 0, bytes + misalign);
    return start + misalign;
}

int main(int argc, char **argv) {
    const fcnn_size B = 64, C = 784, H = argc > 1 ? atol(argv[1]) : 1024;
    const double density = argc > 2 ? atof(argv[2]) : 0.19;
    const int repeats = argc > 3 ? atoi(argv[3]) : 200;
    misalign = argc > 4 ? (size_t)atol(argv[4]) : 0;
    const fcnn_size block = FCNN_PANEL_BYTES / sizeof(float);
    const fcnn_size num_blocks = (H + block - 1) / block, panel_size = num_blocks * C * block;
    float *panels = buffer(panel_size * 4), *velocity = buffer(panel_size * 4);
    float *out = buffer(B * H * 4), *dout = buffer(B * H * 4), *bias = buffer(H * 4);
    float *scratch = buffer(B * block * 4), *x = buffer(B * C * 4);
    float *csr_vals = buffer(B * C * 4), *csc_vals = buffer(B * C * 4);
    int32_t *cols = buffer(B * C * 4), *csc_rows = buffer(B * C * 4);
    fcnn_size *row_start = buffer((B + 1) * sizeof(fcnn_size));
    fcnn_size *col_start = buffer((C + 1) * sizeof(fcnn_size));
    fcnn_size *counts = buffer(C * sizeof(fcnn_size));
    uint8_t *pixels = buffer(B * C);
    int64_t *indices = buffer(B * sizeof(int64_t));
    srand(1);
    for (fcnn_size i = 0; i < panel_size; i++) panels[i] = (float)rand() / RAND_MAX - 0.5f;
    for (fcnn_size i = 0; i < B * H; i++) dout[i] = 1e-3f * ((float)rand() / RAND_MAX - 0.5f);
    // MNIST-like: the non-zeros of each image in the central columns
    for (fcnn_size b = 0; b < B; b++) {
        indices[b] = b;
        for (fcnn_size k = 0; k < C; k++) {
            fcnn_size row = k / 28, col = k % 28;
            int central = row >= 4 && row < 24 && col >= 4 && col < 24;
            double p = central ? density * 784.0 / 400.0 : 0.0;
            pixels[b * C + k] = (double)rand() / RAND_MAX < p ? 1 + rand() % 255 : 0;
        }
    }
    // density 1: every pixel non-zero, through the dense (register-tiled) kernels
    const int sparse = density < 1.0;
    if (!sparse) memset(pixels, 7, B * C);
    for (fcnn_size i = 0; i < B * C; i++) x[i] = (float)pixels[i] / 255.0f;
    fcnn_size present;
    fcnn_size nonzeros = count_nonzeros_f32(counts, &present, pixels, indices, B, C);
    gather_sparse_f32(row_start, cols, csr_vals, col_start, csc_rows, csc_vals, counts, pixels,
                      indices, B, C);
    double units = (double)nonzeros * (double)H / 64.0;  // (non-zero x 64 columns) of work
    // kernel 2 * variant + pass: variant 0 AVX-512 (64-byte vectors), 1 AVX2 (32-byte, the
    // vector width of the kernels before the AVX-512 variant), 2 plain x86-64 (16-byte);
    // pass 0 forward, 1 update
    enum { KERNELS = 6 };
    double best[KERNELS];
    unsigned long long best_cycles[KERNELS];
    for (int kernel = 0; kernel < KERNELS; kernel++) {
        best[kernel] = 1e300;
        best_cycles[kernel] = ~0ull;
    }
    unsigned saved = fcnn_fp_enter();
    for (int r = 0; r < repeats; r++) {
        for (int kernel = 0; kernel < KERNELS; kernel++) {
            double t0 = now();
            unsigned long long c0 = __rdtsc();
            switch (kernel) {
                case 0:
                    first_forward_avx512_f32(out, panels, NULL, bias, NULL, NULL, 0, row_start,
                                             cols, csr_vals, x, sparse, B, C, H, 1, 1, NULL);
                    break;
                case 1:
                    first_update_avx512_f32(panels, velocity, scratch, col_start, counts, csc_rows,
                                            csc_vals, x, sparse, dout, B, C, H, 1e-4f, 0.0f, 0.9f,
                                            1, 1, NULL, NULL);
                    break;
                case 2:
                    first_forward_avx2_f32(out, panels, NULL, bias, NULL, NULL, 0, row_start,
                                             cols, csr_vals, x, sparse, B, C, H, 1, 1, NULL);
                    break;
                case 3:
                    first_update_avx2_f32(panels, velocity, scratch, col_start, counts, csc_rows,
                                          csc_vals, x, sparse, dout, B, C, H, 1e-4f, 0.0f, 0.9f, 1,
                                          1, NULL, NULL);
                    break;
                case 4:
                    first_forward_sse2_f32(out, panels, NULL, bias, NULL, NULL, 0, row_start,
                                           cols, csr_vals, x, sparse, B, C, H, 1, 1, NULL);
                    break;
                default:
                    first_update_sse2_f32(panels, velocity, scratch, col_start, counts, csc_rows,
                                          csc_vals, x, sparse, dout, B, C, H, 1e-4f, 0.0f, 0.9f, 1,
                                          1, NULL, NULL);
                    break;
            }
            unsigned long long cycles = __rdtsc() - c0;
            double seconds = now() - t0;
            best[kernel] = seconds < best[kernel] ? seconds : best[kernel];
            best_cycles[kernel] = cycles < best_cycles[kernel] ? cycles : best_cycles[kernel];
        }
    }
    fcnn_fp_leave(saved);
    printf("B %td C %td H %td: %td non-zeros (%.1f%%), %td rows present, %d repeats; the epoch "
           "uses the %s forward and the %s update on this CPU\n", B, C, H, nonzeros,
           100.0 * nonzeros / (B * C), present, repeats,
           build_name(first_layer_vector_bytes(FORWARD_KERNEL, sparse)),
           build_name(first_layer_vector_bytes(UPDATE_KERNEL, sparse)));
    const char *names[KERNELS] = {"AVX-512 forward (CSR)", "AVX-512 gradient+update (CSC)",
                                  "AVX2 forward (CSR)",    "AVX2 gradient+update (CSC)",
                                  "16-byte forward (CSR)", "16-byte gradient+update (CSC)"};
    for (int kernel = 0; kernel < KERNELS; kernel++) {
        printf("%-30s %9.1f us  %6.2f ns  %6.2f TSC cycles per (non-zero x 64 columns)\n",
               names[kernel], 1e6 * best[kernel], 1e9 * best[kernel] / units,
               (double)best_cycles[kernel] / units);
    }
    return 0;
}
