// The first layer's two hot kernels, included by epoch.c once per instruction set (an
// AVX-512 build with 64-byte vectors, an AVX2 one with 32-byte vectors, each with a portable
// fallback clone, and a plain x86-64 one with 16-byte vectors), inside its dtype template.
// Defined by the includer: FIRST_LAYER(name), the variant's name; FIRST_LAYER_TARGETS, its
// target_clones attribute (or nothing); VECTOR_BYTES; BLOCK. No include guard: included
// several times.
//
// The dense kernels sum every output in the order of the sparse ones (ascending input index
// for the forward, ascending batch row for the gradient, one multiply-add chain per element),
// and a zero pixel adds exactly zero: so a batch gives the same bits through either path, and
// the cost model's choice (epoch.c) changes the speed only, never the result. Both update only
// the rows of pixels present in the batch; the others are left to the lazy catch-up.

// Columns per block: FCNN_PANEL_BYTES of accumulators as VECTORS vectors (four zmm registers
// in the AVX-512 build, eight ymm in the AVX2 one, sixteen xmm in the 16-byte one). The vector
// extension makes the register blocking explicit.
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

// Rows of a sparse batch in flight at once: eight vectors of accumulators in all.
#define ROWS (VECTORS >= 8 ? 1 : 8 / VECTORS)

// Non-zeros ahead of the sparse forward whose panel rows it asks for early: the rows come in
// no order a hardware prefetcher can follow. On Zen 1 (AVX2, the panel streaming from L2)
// this took the forward of an MNIST-like batch from 861 to 717 us (bench_kernel.py; 4 to 16
// ahead all alike). The AVX-512 build asks for none: it was tuned without, on CPUs with a
// faster L2, and has not been measured with it.
#define PREFETCH_AHEAD (VECTOR_BYTES == 32 ? 8 : 0)

// the panel row of non-zero p + PREFETCH_AHEAD asked for, when there is one
static inline __attribute__((always_inline)) void FIRST_LAYER(prefetch_row)(
    const real *panel, const int32_t *cols, fcnn_size p, fcnn_size nonzeros) {
    if (PREFETCH_AHEAD == 0 || p + PREFETCH_AHEAD >= nonzeros) return;
    const char *row = (const char *)(panel + (fcnn_size)cols[p + PREFETCH_AHEAD] * BLOCK);
    for (int line = 0; line < FCNN_PANEL_BYTES / 64; line++) __builtin_prefetch(row + 64 * line);
}

// o[0, width) <- the accumulators of a panel row, ReLU'd if relu
static inline __attribute__((always_inline)) void FIRST_LAYER(store_row)(
    real *o, const VECTOR *acc, fcnn_size width, int relu) {
    real result[BLOCK];
    for (int v = 0; v < VECTORS; v++) FIRST_LAYER(store)(result + v * LANES, acc[v]);
    for (fcnn_size j = 0; j < width; j++) o[j] = relu && result[j] < 0 ? 0 : result[j];
}

// Rows (or inputs) per register tile of the dense kernels, and vectors per tile row. AVX2:
// 6 x 2 accumulators, two loads and six broadcasts per step (fifteen of the sixteen ymm
// registers). AVX-512: 6 x 4, the whole block, twenty-eight of the thirty-two zmm registers;
// a broadcast then feeds four multiply-adds, not two, and x is read once per block, not twice.
#define TILE_ROWS 6
#define TILE_VECTORS (VECTOR_BYTES == 64 ? VECTORS : VECTORS < 2 ? VECTORS : 2)
#define TILE_COLUMNS (TILE_VECTORS * LANES)

// out rows [b0, b0 + R) x columns [c0, c0 + TILE_COLUMNS) of a block = start + x @ panel,
// summed over k ascending; only columns below width are written, ReLU'd if relu.
static inline __attribute__((always_inline)) void FIRST_LAYER(forward_tile)(
    real *out, const real *panel, const real *start, const real *x, fcnn_size b0, const int R,
    fcnn_size c0, fcnn_size width, fcnn_size C, fcnn_size H, int relu) {
    VECTOR acc[TILE_ROWS][TILE_VECTORS];
    for (int r = 0; r < R; r++) {
        for (int u = 0; u < TILE_VECTORS; u++) {
            acc[r][u] = FIRST_LAYER(load)(start + c0 + u * LANES);
        }
    }
    for (fcnn_size k = 0; k < C; k++) {
        VECTOR w[TILE_VECTORS];
        for (int u = 0; u < TILE_VECTORS; u++) {
            w[u] = FIRST_LAYER(load)(panel + k * BLOCK + c0 + u * LANES);
        }
        for (int r = 0; r < R; r++) {
            const real value = x[(b0 + r) * C + k];
            for (int u = 0; u < TILE_VECTORS; u++) acc[r][u] += value * w[u];
        }
    }
    for (int r = 0; r < R; r++) {
        real result[TILE_COLUMNS];
        for (int u = 0; u < TILE_VECTORS; u++) {
            FIRST_LAYER(store)(result + u * LANES, acc[r][u]);
        }
        real *o = out + (b0 + r) * H;
        for (fcnn_size j = 0; j < TILE_COLUMNS && c0 + j < width; j++) {
            o[c0 + j] = relu && result[j] < 0 ? 0 : result[j];
        }
    }
}

// g (R, BLOCK) columns [c0, c0 + TILE_COLUMNS) = x[:, k0:k0+R]^T @ the same columns of dout,
// summed over the batch rows ascending; dout is the block, (B, BLOCK).
static inline __attribute__((always_inline)) void FIRST_LAYER(gradient_tile)(
    real *g, const real *dout, const real *x, fcnn_size k0, const int R, fcnn_size c0,
    fcnn_size B, fcnn_size C) {
    VECTOR acc[TILE_ROWS][TILE_VECTORS];
    for (int r = 0; r < R; r++) {
        for (int u = 0; u < TILE_VECTORS; u++) acc[r][u] = (VECTOR){0};
    }
    for (fcnn_size b = 0; b < B; b++) {
        VECTOR d[TILE_VECTORS];
        for (int u = 0; u < TILE_VECTORS; u++) {
            d[u] = FIRST_LAYER(load)(dout + b * BLOCK + c0 + u * LANES);
        }
        for (int r = 0; r < R; r++) {
            const real value = x[b * C + k0 + r];
            for (int u = 0; u < TILE_VECTORS; u++) acc[r][u] += value * d[u];
        }
    }
    for (int r = 0; r < R; r++) {
        for (int u = 0; u < TILE_VECTORS; u++) {
            FIRST_LAYER(store)(g + r * BLOCK + c0 + u * LANES, acc[r][u]);
        }
    }
}

// The tiles above on min(count, TILE_ROWS) rows (or inputs), the count a constant in each
// call so that the accumulators stay in registers: a batch's last B % TILE_ROWS rows make one
// tile of their own size, not as many single-row chains, each bound by the latency of its adds.
_Static_assert(TILE_ROWS == 6, "FIRST_LAYER_TILE_CASES lists the counts 1 to TILE_ROWS - 1");
#define FIRST_LAYER_TILE_CASES(count, call) \
    switch ((count) < TILE_ROWS ? (count) : TILE_ROWS) { \
        case 1: call(1); break; \
        case 2: call(2); break; \
        case 3: call(3); break; \
        case 4: call(4); break; \
        case 5: call(5); break; \
        default: call(TILE_ROWS); break; \
    }

// batch (sparse: CSR row_start (B+1), cols, vals; dense: x (B, C)) x panels + bias
// -> out (B, H), ReLU'd if relu; first, the rows of the catch-up list are brought up to date.
// after_block: NULL, or work on each block's columns of out, run by their thread once written.
FIRST_LAYER_TARGETS static void FIRST_LAYER(first_forward)(
    real *out, real *panels, real *velocity_panels, const real *bias,
    const int32_t *catch_up_rows, const double *maps, fcnn_size num_catch_up,
    const fcnn_size *row_start, const int32_t *cols, const real *vals, const real *x,
    int sparse, fcnn_size B, fcnn_size C, fcnn_size H, int relu, int num_threads,
    const block_hook *after_block) {
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
            real start[BLOCK];
            for (fcnn_size j = 0; j < BLOCK; j++) start[j] = j < width ? bias[j0 + j] : 0;
            if (sparse) {
                // ROWS rows at a time, in lockstep over their common length: ROWS independent
                // multiply-add chains per vector instead of one; each row still sums its
                // non-zeros in order. Then each row's remaining non-zeros alone.
                const fcnn_size nonzeros = row_start[B];
                fcnn_size b = 0;
                for (; b + ROWS <= B; b += ROWS) {
                    VECTOR acc[ROWS][VECTORS];
                    fcnn_size first[ROWS], common = -1;
                    for (int r = 0; r < ROWS; r++) {
                        for (int v = 0; v < VECTORS; v++) {
                            acc[r][v] = FIRST_LAYER(load)(start + v * LANES);
                        }
                        first[r] = row_start[b + r];
                        fcnn_size length = row_start[b + r + 1] - first[r];
                        common = common < 0 || length < common ? length : common;
                    }
                    for (fcnn_size i = 0; i < common; i++) {
                        for (int r = 0; r < ROWS; r++) {
                            const real value = vals[first[r] + i];
                            const real *w = panel + (fcnn_size)cols[first[r] + i] * BLOCK;
                            FIRST_LAYER(prefetch_row)(panel, cols, first[r] + i, nonzeros);
                            for (int v = 0; v < VECTORS; v++) {
                                acc[r][v] += value * FIRST_LAYER(load)(w + v * LANES);
                            }
                        }
                    }
                    for (int r = 0; r < ROWS; r++) {
                        for (fcnn_size p = first[r] + common; p < row_start[b + r + 1]; p++) {
                            const real value = vals[p];
                            const real *w = panel + (fcnn_size)cols[p] * BLOCK;
                            for (int v = 0; v < VECTORS; v++) {
                                acc[r][v] += value * FIRST_LAYER(load)(w + v * LANES);
                            }
                        }
                        FIRST_LAYER(store_row)(out + (b + r) * H + j0, acc[r], width, relu);
                    }
                }
                for (; b < B; b++) {
                    VECTOR acc[VECTORS];
                    for (int v = 0; v < VECTORS; v++) {
                        acc[v] = FIRST_LAYER(load)(start + v * LANES);
                    }
                    for (fcnn_size p = row_start[b]; p < row_start[b + 1]; p++) {
                        const real value = vals[p];
                        const real *w = panel + (fcnn_size)cols[p] * BLOCK;
                        for (int v = 0; v < VECTORS; v++) {
                            acc[v] += value * FIRST_LAYER(load)(w + v * LANES);
                        }
                    }
                    FIRST_LAYER(store_row)(out + b * H + j0, acc, width, relu);
                }
            } else {
                for (fcnn_size c0 = 0; c0 < width; c0 += TILE_COLUMNS) {
                    for (fcnn_size b = 0; b < B; b += TILE_ROWS) {
#define FORWARD_TILE(R) \
    FIRST_LAYER(forward_tile)(out + j0, panel, start, x, b, R, c0, width, C, H, relu)
                        FIRST_LAYER_TILE_CASES(B - b, FORWARD_TILE)
#undef FORWARD_TILE
                    }
                }
            }
            if (after_block != NULL) after_block->run(after_block->arg, j0, width);
        }
        fcnn_fp_leave(saved_fp);
    }
}

// panels (and velocity panels, or NULL) updated with the gradient batch^T dout, which is never
// stored whole: per panel, for each input k present in the batch (counts[k] > 0), the gradient
// row g; sparse: the sum over the non-zeros x_bk of column k (CSC col_start, rows, vals) of
// x_bk * dout[b]; dense: the same sum over every b, in tiles of TILE_ROWS inputs. Rows of
// absent inputs are left to the lazy catch-up. scratch holds B * BLOCK reals per thread.
// side: NULL, or work independent of this (warping and gathering the next batch) that the
// threads do first as they arrive (run_side_job); each then takes the blocks still left.
// before_block: NULL, or the work that makes a block's columns of dout, run before it reads them.
FIRST_LAYER_TARGETS static void FIRST_LAYER(first_update)(
    real *panels, real *velocity_panels, real *scratch, const fcnn_size *col_start,
    const fcnn_size *counts, const int32_t *rows, const real *vals, const real *x, int sparse,
    const real *dout, fcnn_size B, fcnn_size C, fcnn_size H, real lr, real weight_decay,
    real momentum, int nesterov, int num_threads, side_job *side,
    const block_hook *before_block) {
    fcnn_size num_blocks = (H + BLOCK - 1) / BLOCK;
    fcnn_size scratch_size = B * BLOCK;
#pragma omp parallel num_threads(num_threads)
    {
        unsigned saved_fp = fcnn_fp_enter();
        real *mine = scratch + fcnn_thread_index() * scratch_size;
        run_side_job(side, fcnn_thread_index());
#pragma omp for schedule(dynamic, 1)
        for (fcnn_size block = 0; block < num_blocks; block++) {
            fcnn_size j0 = block * BLOCK, width = H - j0 < BLOCK ? H - j0 : BLOCK;
            real *panel = panels + block * C * BLOCK;
            real *velocity = velocity_panels == NULL ? NULL : velocity_panels + block * C * BLOCK;
            if (before_block != NULL) before_block->run(before_block->arg, j0, width);
            // This block of dout, contiguous and zero-padded: (B, BLOCK), in L1.
            for (fcnn_size b = 0; b < B; b++) {
                memcpy(mine + b * BLOCK, dout + b * H + j0, width * sizeof(real));
                for (fcnn_size j = width; j < BLOCK; j++) mine[b * BLOCK + j] = 0;
            }
            if (sparse) {
                real g[BLOCK];
                for (fcnn_size k = 0; k < C; k++) {
                    if (counts[k] == 0) continue;
                    VECTOR acc[VECTORS];
                    for (int v = 0; v < VECTORS; v++) acc[v] = (VECTOR){0};
                    for (fcnn_size p = col_start[k]; p < col_start[k + 1]; p++) {
                        const real value = vals[p];
                        const real *d = mine + (fcnn_size)rows[p] * BLOCK;
                        for (int v = 0; v < VECTORS; v++) {
                            acc[v] += value * FIRST_LAYER(load)(d + v * LANES);
                        }
                    }
                    for (int v = 0; v < VECTORS; v++) FIRST_LAYER(store)(g + v * LANES, acc[v]);
                    real *velocity_row = velocity == NULL ? NULL : velocity + k * BLOCK;
                    S(sgd_rule)(panel + k * BLOCK, velocity_row, g, lr, weight_decay, momentum,
                                nesterov, width);
                }
            } else {
                // A tile of inputs across the whole block, then the rule on whole rows: one
                // call per row and block, not one per tile of columns (a fifth of the dense
                // update's time on Zen 1 went to those short calls).
                real g[TILE_ROWS * BLOCK];
                for (fcnn_size k0 = 0; k0 < C; k0 += TILE_ROWS) {
                    int tile = C - k0 < TILE_ROWS ? (int)(C - k0) : TILE_ROWS;
                    for (fcnn_size c0 = 0; c0 < width; c0 += TILE_COLUMNS) {
#define GRADIENT_TILE(R) FIRST_LAYER(gradient_tile)(g, mine, x, k0, R, c0, B, C)
                        FIRST_LAYER_TILE_CASES(tile, GRADIENT_TILE)
#undef GRADIENT_TILE
                    }
                    for (int r = 0; r < tile; r++) {
                        fcnn_size k = k0 + r;
                        if (counts[k] == 0) continue;
                        real *velocity_row = velocity == NULL ? NULL : velocity + k * BLOCK;
                        S(sgd_rule)(panel + k * BLOCK, velocity_row, g + r * BLOCK, lr,
                                    weight_decay, momentum, nesterov, width);
                    }
                }
            }
        }
        fcnn_fp_leave(saved_fp);
    }
}

#undef FIRST_LAYER_TILE_CASES
#undef TILE_COLUMNS
#undef TILE_VECTORS
#undef TILE_ROWS
#undef PREFETCH_AHEAD
#undef ROWS
#undef VECTORS
#undef LANES
#undef VECTOR
