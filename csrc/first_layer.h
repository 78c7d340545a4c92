// The first layer's two hot kernels, included by epoch.c once per instruction set (an
// AVX-512 build with 64-byte vectors, an AVX2 one with 32-byte vectors, each with a portable
// fallback clone), inside its dtype template. Defined by the includer: FIRST_LAYER(name), the
// variant's name; FIRST_LAYER_TARGETS, its target_clones attribute; VECTOR_BYTES; BLOCK.
// No include guard: included several times.

// Columns per block: FCNN_PANEL_BYTES of accumulators as VECTORS vectors (four zmm registers
// in the AVX-512 build, eight ymm in the AVX2 one, sixteen xmm in the portable clones: GCC
// splits wide vectors). The vector extension makes the register blocking explicit.
typedef real FIRST_LAYER(vector) __attribute__((vector_size(VECTOR_BYTES)));
#define VECTOR FIRST_LAYER(vector)
#define LANES ((fcnn_size)(VECTOR_BYTES / sizeof(real)))
#define VECTORS (FCNN_PANEL_BYTES / VECTOR_BYTES)

static inline VECTOR FIRST_LAYER(load)(const real *p) {
    VECTOR v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void FIRST_LAYER(store)(real *p, VECTOR v) { memcpy(p, &v, sizeof v); }

// batch (sparse: CSR row_start (B+1), cols, vals; dense: x (B, C)) x panels + bias
// -> out (B, H), ReLU'd if relu; first, the rows of the catch-up list are brought up to date.
FIRST_LAYER_TARGETS static void FIRST_LAYER(first_forward)(real *out, real *panels, real *velocity_panels,
                                       const real *bias, const int32_t *catch_up_rows,
                                       const double *maps, fcnn_size num_catch_up,
                                       const fcnn_size *row_start, const int32_t *cols,
                                       const real *vals, const real *x, int sparse, fcnn_size B,
                                       fcnn_size C, fcnn_size H, int relu, int num_threads) {
    fcnn_size num_blocks = (H + BLOCK - 1) / BLOCK;
#pragma omp parallel num_threads(num_threads)
    {
        unsigned saved_fp = fcnn_fp_enter();
#pragma omp for schedule(dynamic, 1)
        for (fcnn_size block = 0; block < num_blocks; block++) {
            fcnn_size j0 = block * BLOCK, width = H - j0 < BLOCK ? H - j0 : BLOCK;
            real *panel = panels + block * C * BLOCK;
            real *velocity = velocity_panels == NULL ? NULL : velocity_panels + block * C * BLOCK;
            S(catch_up_block)(panel, velocity, catch_up_rows, maps, num_catch_up);
            if (sparse) {
                real start[BLOCK], result[BLOCK];
                for (fcnn_size j = 0; j < BLOCK; j++) start[j] = j < width ? bias[j0 + j] : 0;
                for (fcnn_size b = 0; b < B; b++) {
                    VECTOR acc[VECTORS];
                    for (int v = 0; v < VECTORS; v++) acc[v] = FIRST_LAYER(load)(start + v * LANES);
                    for (fcnn_size p = row_start[b]; p < row_start[b + 1]; p++) {
                        const real value = vals[p];
                        const real *w = panel + (fcnn_size)cols[p] * BLOCK;
                        for (int v = 0; v < VECTORS; v++) acc[v] += value * FIRST_LAYER(load)(w + v * LANES);
                    }
                    for (int v = 0; v < VECTORS; v++) FIRST_LAYER(store)(result + v * LANES, acc[v]);
                    real *o = out + b * H + j0;
                    for (fcnn_size j = 0; j < width; j++) {
                        o[j] = relu && result[j] < 0 ? 0 : result[j];
                    }
                }
            } else {
                GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)B, (blasint)width,
                     (blasint)C, 1, x, (blasint)C, panel, (blasint)BLOCK, 0, out + j0,
                     (blasint)H);
                for (fcnn_size b = 0; b < B; b++) {
                    real *o = out + b * H + j0;
                    for (fcnn_size j = 0; j < width; j++) {
                        real z = o[j] + bias[j0 + j];
                        o[j] = relu && z < 0 ? 0 : z;
                    }
                }
            }
        }
        fcnn_fp_leave(saved_fp);
    }
}

// panels (and velocity panels, or NULL) updated with the gradient batch^T dout, which is never
// stored whole: per panel, sparse: for each input k present in the batch, g = sum over the
// non-zeros x_bk of column k (CSC col_start, rows, vals) of x_bk * dout[b] (absent rows are
// left to the lazy catch-up); dense: one GEMM into the thread's scratch, every row updated.
// scratch holds max(B, C) * BLOCK reals per thread.
FIRST_LAYER_TARGETS static void FIRST_LAYER(first_update)(real *panels, real *velocity_panels, real *scratch,
                                      const fcnn_size *col_start, const int32_t *rows,
                                      const real *vals, const real *x, int sparse,
                                      const real *dout, fcnn_size B, fcnn_size C, fcnn_size H,
                                      real lr, real weight_decay, real momentum, int nesterov,
                                      int num_threads) {
    fcnn_size num_blocks = (H + BLOCK - 1) / BLOCK;
    fcnn_size scratch_size = (B > C ? B : C) * BLOCK;
#pragma omp parallel num_threads(num_threads)
    {
        unsigned saved_fp = fcnn_fp_enter();
        real *mine = scratch + fcnn_thread_index() * scratch_size;
#pragma omp for schedule(dynamic, 1)
        for (fcnn_size block = 0; block < num_blocks; block++) {
            fcnn_size j0 = block * BLOCK, width = H - j0 < BLOCK ? H - j0 : BLOCK;
            real *panel = panels + block * C * BLOCK;
            real *velocity = velocity_panels == NULL ? NULL : velocity_panels + block * C * BLOCK;
            if (sparse) {
                // This block of dout, contiguous and zero-padded: (B, BLOCK), in L1.
                for (fcnn_size b = 0; b < B; b++) {
                    memcpy(mine + b * BLOCK, dout + b * H + j0, width * sizeof(real));
                    for (fcnn_size j = width; j < BLOCK; j++) mine[b * BLOCK + j] = 0;
                }
                real g[BLOCK];
                for (fcnn_size k = 0; k < C; k++) {
                    if (col_start[k] == col_start[k + 1]) continue;
                    VECTOR acc[VECTORS];
                    for (int v = 0; v < VECTORS; v++) acc[v] = (VECTOR){0};
                    for (fcnn_size p = col_start[k]; p < col_start[k + 1]; p++) {
                        const real value = vals[p];
                        const real *d = mine + (fcnn_size)rows[p] * BLOCK;
                        for (int v = 0; v < VECTORS; v++) acc[v] += value * FIRST_LAYER(load)(d + v * LANES);
                    }
                    for (int v = 0; v < VECTORS; v++) FIRST_LAYER(store)(g + v * LANES, acc[v]);
                    real *velocity_row = velocity == NULL ? NULL : velocity + k * BLOCK;
                    S(sgd_rule)(panel + k * BLOCK, velocity_row, g, lr, weight_decay, momentum,
                                nesterov, width);
                }
            } else {
                GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)C, (blasint)width,
                     (blasint)B, 1, x, (blasint)C, dout + j0, (blasint)H, 0, mine,
                     (blasint)BLOCK);
                for (fcnn_size k = 0; k < C; k++) {
                    real *velocity_row = velocity == NULL ? NULL : velocity + k * BLOCK;
                    S(sgd_rule)(panel + k * BLOCK, velocity_row, mine + k * BLOCK, lr,
                                weight_decay, momentum, nesterov, width);
                }
            }
        }
        fcnn_fp_leave(saved_fp);
    }
}

#undef VECTORS
#undef LANES
#undef VECTOR
