// The fused training epoch of a plain MLP (Linear, ReLU, ..., Linear, softmax-cross-entropy):
// batch gathering from the raw images, forward, loss, backward and the SGD update in one call,
// in a workspace allocated by the caller once. The first layer works on the batch's non-zeros
// only when the batch is sparse enough (MNIST: ~19% of pixels are non-zero): its forward product
// runs over CSR rows and its weight gradient over CSC columns, folded straight into the SGD
// update so the gradient of the largest weight matrix is never stored.
//
// Threads: OpenMP over column blocks of the first layer (each output element has one owner and
// one summation order, so results do not depend on the thread count); BLAS for the dense
// products of the other layers.
#ifndef FCNN_TEMPLATE
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cblas.h"
#include "kernels.h"

// ----------------------------------------------------------------------------
// workspace layout, shared by both dtypes (sizes in bytes)

// Rounds a byte count up to 64 so every workspace part starts on a cache line.
static fcnn_size round_up(fcnn_size bytes) { return (bytes + 63) / 64 * 64; }

fcnn_size fcnn_train_epoch_workspace(const fcnn_size *sizes, fcnn_size L, fcnn_size B,
                                     fcnn_size item, int num_threads) {
    fcnn_size C0 = sizes[0], widest = 0, largest_weight = 0, total = 0;
    for (fcnn_size l = 1; l <= L; l++) widest = sizes[l] > widest ? sizes[l] : widest;
    for (fcnn_size l = 0; l < L; l++) {
        fcnn_size weight = sizes[l] * sizes[l + 1];
        largest_weight = weight > largest_weight ? weight : largest_weight;
    }
    fcnn_size block = FCNN_PANEL_BYTES / item;
    fcnn_size panels = (sizes[1] + block - 1) / block * C0 * block;
    fcnn_size scratch = (B > C0 ? B : C0) * block;
    total += round_up(B * C0 * item);                      // dense batch, or CSR values
    total += round_up(B * C0 * item);                      // CSC values
    total += 2 * round_up(B * C0 * (fcnn_size)sizeof(int32_t));  // CSR columns, CSC rows
    total += round_up((B + 1) * (fcnn_size)sizeof(fcnn_size));   // CSR row starts
    total += round_up((C0 + 1) * (fcnn_size)sizeof(fcnn_size));  // CSC column starts
    for (fcnn_size l = 1; l <= L; l++) total += round_up(B * sizes[l] * item);  // activations
    total += 2 * round_up(B * widest * item);              // gradient ping-pong
    total += round_up(largest_weight * item);              // a dense weight gradient
    total += round_up(widest * item);                      // a bias gradient
    total += 2 * round_up(panels * item);                  // first-layer weight, velocity panels
    total += round_up(num_threads * scratch * item);       // per-thread panel scratch
    return total;
}

int fcnn_thread_index(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

void fcnn_set_threads(int count) {
#ifdef _OPENMP
    omp_set_num_threads(count);
#endif
    scipy_openblas_set_num_threads(count);
}

int fcnn_default_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

#define FCNN_TEMPLATE "epoch.c"
#include "template.h"

#else

#include "sgd_rule.h"

// ----------------------------------------------------------------------------
// first layer on a sparse batch

// Columns per block: eight 32-byte vectors of accumulators (eight AVX registers; sixteen SSE
// registers in the portable build), FCNN_PANEL_BYTES in all. GCC's vector extension makes the
// register blocking explicit.
typedef real S(vector) __attribute__((vector_size(32)));
#define VECTOR S(vector)
#define LANES ((fcnn_size)(32 / sizeof(real)))
#define VECTORS 8
#define BLOCK ((fcnn_size)(FCNN_PANEL_BYTES / sizeof(real)))
_Static_assert(VECTORS * 32 == FCNN_PANEL_BYTES, "a panel row is VECTORS vectors");

static inline VECTOR S(load)(const real *p) {
    VECTOR v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void S(store)(real *p, VECTOR v) { memcpy(p, &v, sizeof v); }

// The first layer's weight (C, H) is kept during a call as panels (ceil(H / BLOCK), C, BLOCK):
// panel p holds columns [p * BLOCK, p * BLOCK + BLOCK), zero-padded, contiguous. Read straight
// from the (C, H) array, rows 4 KB apart (H = 1024 floats) all fall in a few cache sets and the
// block thrashes; as a panel it streams from L2.

// weight (C, H) -> panels; panels -> weight when unpack
static void S(repack)(real *panels, real *weight, fcnn_size C, fcnn_size H, int unpack) {
    fcnn_size num_blocks = (H + BLOCK - 1) / BLOCK;
    for (fcnn_size block = 0; block < num_blocks; block++) {
        fcnn_size j0 = block * BLOCK, width = H - j0 < BLOCK ? H - j0 : BLOCK;
        real *panel = panels + block * C * BLOCK;
        for (fcnn_size k = 0; k < C; k++) {
            if (unpack) {
                memcpy(weight + k * H + j0, panel + k * BLOCK, width * sizeof(real));
            } else {
                memcpy(panel + k * BLOCK, weight + k * H + j0, width * sizeof(real));
                for (fcnn_size j = width; j < BLOCK; j++) panel[k * BLOCK + j] = 0;
            }
        }
    }
}

// batch (sparse: CSR row_start (B+1), cols, vals; dense: x (B, C)) x panels + bias
// -> out (B, H), ReLU'd if relu
FCNN_HOT static void S(first_forward)(real *out, const real *panels, const real *bias,
                                       const fcnn_size *row_start, const int32_t *cols,
                                       const real *vals, const real *x, int sparse, fcnn_size B,
                                       fcnn_size C, fcnn_size H, int relu, int num_threads) {
    fcnn_size num_blocks = (H + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads)
    for (fcnn_size block = 0; block < num_blocks; block++) {
        fcnn_size j0 = block * BLOCK, width = H - j0 < BLOCK ? H - j0 : BLOCK;
        const real *panel = panels + block * C * BLOCK;
        if (sparse) {
            real start[BLOCK], result[BLOCK];
            for (fcnn_size j = 0; j < BLOCK; j++) start[j] = j < width ? bias[j0 + j] : 0;
            for (fcnn_size b = 0; b < B; b++) {
                VECTOR acc[VECTORS];
                for (int v = 0; v < VECTORS; v++) acc[v] = S(load)(start + v * LANES);
                for (fcnn_size p = row_start[b]; p < row_start[b + 1]; p++) {
                    const real value = vals[p];
                    const real *w = panel + (fcnn_size)cols[p] * BLOCK;
                    for (int v = 0; v < VECTORS; v++) acc[v] += value * S(load)(w + v * LANES);
                }
                for (int v = 0; v < VECTORS; v++) S(store)(result + v * LANES, acc[v]);
                real *o = out + b * H + j0;
                for (fcnn_size j = 0; j < width; j++) {
                    o[j] = relu && result[j] < 0 ? 0 : result[j];
                }
            }
        } else {
            GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)B, (blasint)width,
                 (blasint)C, 1, x, (blasint)C, panel, (blasint)BLOCK, 0, out + j0, (blasint)H);
            for (fcnn_size b = 0; b < B; b++) {
                real *o = out + b * H + j0;
                for (fcnn_size j = 0; j < width; j++) {
                    real z = o[j] + bias[j0 + j];
                    o[j] = relu && z < 0 ? 0 : z;
                }
            }
        }
    }
}

// panels (and velocity panels, or NULL) updated with the gradient batch^T dout, which is never
// stored whole: per panel, sparse: for each input k, g = sum over the non-zeros x_bk of column
// k (CSC col_start, rows, vals) of x_bk * dout[b]; dense: one GEMM into the thread's scratch.
// scratch holds max(B, C) * BLOCK reals per thread.
FCNN_HOT static void S(first_update)(real *panels, real *velocity_panels, real *scratch,
                                      const fcnn_size *col_start, const int32_t *rows,
                                      const real *vals, const real *x, int sparse,
                                      const real *dout, fcnn_size B, fcnn_size C, fcnn_size H,
                                      real lr, real weight_decay, real momentum, int nesterov,
                                      int num_threads) {
    // Without decay or momentum an input absent from the batch leaves its row unchanged.
    const int touch_all = weight_decay != 0 || velocity_panels != NULL;
    fcnn_size num_blocks = (H + BLOCK - 1) / BLOCK;
    fcnn_size scratch_size = (B > C ? B : C) * BLOCK;
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads)
    for (fcnn_size block = 0; block < num_blocks; block++) {
        fcnn_size j0 = block * BLOCK, width = H - j0 < BLOCK ? H - j0 : BLOCK;
        real *panel = panels + block * C * BLOCK;
        real *velocity = velocity_panels == NULL ? NULL : velocity_panels + block * C * BLOCK;
        real *mine = scratch + fcnn_thread_index() * scratch_size;
        if (sparse) {
            // This block of dout, contiguous and zero-padded: (B, BLOCK), in L1.
            for (fcnn_size b = 0; b < B; b++) {
                memcpy(mine + b * BLOCK, dout + b * H + j0, width * sizeof(real));
                for (fcnn_size j = width; j < BLOCK; j++) mine[b * BLOCK + j] = 0;
            }
            real g[BLOCK];
            for (fcnn_size k = 0; k < C; k++) {
                if (!touch_all && col_start[k] == col_start[k + 1]) continue;
                VECTOR acc[VECTORS];
                for (int v = 0; v < VECTORS; v++) acc[v] = (VECTOR){0};
                for (fcnn_size p = col_start[k]; p < col_start[k + 1]; p++) {
                    const real value = vals[p];
                    const real *d = mine + (fcnn_size)rows[p] * BLOCK;
                    for (int v = 0; v < VECTORS; v++) acc[v] += value * S(load)(d + v * LANES);
                }
                for (int v = 0; v < VECTORS; v++) S(store)(g + v * LANES, acc[v]);
                real *velocity_row = velocity == NULL ? NULL : velocity + k * BLOCK;
                S(sgd_rule)(panel + k * BLOCK, velocity_row, g, lr, weight_decay, momentum,
                            nesterov, width);
            }
        } else {
            GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)C, (blasint)width, (blasint)B,
                 1, x, (blasint)C, dout + j0, (blasint)H, 0, mine, (blasint)BLOCK);
            for (fcnn_size k = 0; k < C; k++) {
                real *velocity_row = velocity == NULL ? NULL : velocity + k * BLOCK;
                S(sgd_rule)(panel + k * BLOCK, velocity_row, mine + k * BLOCK, lr,
                            weight_decay, momentum, nesterov, width);
            }
        }
    }
}

// ----------------------------------------------------------------------------
// the epoch

// Fills the batch for `rows` samples starting at order[first]: CSR and CSC of the scaled
// non-zeros when sparse, else the dense batch x (rows, C). Returns 1 when it chose sparse.
static int S(gather_batch)(real *x, fcnn_size *row_start, int32_t *cols, real *csr_vals,
                           fcnn_size *col_start, int32_t *csc_rows, real *csc_vals,
                           const void *images, int images_are_bytes, const int64_t *indices,
                           fcnn_size rows, fcnn_size C, double sparse_threshold) {
    const real scale = (real)255;
    if (images_are_bytes) {
        const uint8_t *pixels = (const uint8_t *)images;
        fcnn_size nonzeros = 0;
        for (fcnn_size b = 0; b < rows; b++) {
            const uint8_t *image = pixels + indices[b] * C;
            for (fcnn_size k = 0; k < C; k++) nonzeros += image[k] != 0;
        }
        if ((double)nonzeros < sparse_threshold * (double)(rows * C)) {
            fcnn_size p = 0;
            for (fcnn_size k = 0; k <= C; k++) col_start[k] = 0;
            for (fcnn_size b = 0; b < rows; b++) {
                const uint8_t *image = pixels + indices[b] * C;
                row_start[b] = p;
                for (fcnn_size k = 0; k < C; k++) {
                    if (image[k] != 0) {
                        cols[p] = (int32_t)k;
                        // Divided, not multiplied by 1/255: the same rounding as the DataLoader.
                        csr_vals[p++] = (real)image[k] / scale;
                        col_start[k + 1]++;
                    }
                }
            }
            row_start[rows] = p;
            for (fcnn_size k = 0; k < C; k++) col_start[k + 1] += col_start[k];
            // Counting sort of the CSR entries by column; rows stay ascending within a column.
            for (fcnn_size b = 0; b < rows; b++) {
                for (fcnn_size q = row_start[b]; q < row_start[b + 1]; q++) {
                    fcnn_size slot = col_start[cols[q]]++;
                    csc_rows[slot] = (int32_t)b;
                    csc_vals[slot] = csr_vals[q];
                }
            }
            for (fcnn_size k = C; k > 0; k--) col_start[k] = col_start[k - 1];
            col_start[0] = 0;
            return 1;
        }
        for (fcnn_size b = 0; b < rows; b++) {
            const uint8_t *image = pixels + indices[b] * C;
            for (fcnn_size k = 0; k < C; k++) x[b * C + k] = (real)image[k] / scale;
        }
        return 0;
    }
    const real *values = (const real *)images;
    for (fcnn_size b = 0; b < rows; b++) {
        memcpy(x + b * C, values + indices[b] * C, C * sizeof(real));
    }
    return 0;
}

// C (M, N) = op(A) op(B) (row-major, beta 0) with the columns of C split across OpenMP
// threads, each running its own one-threaded BLAS call: inside a fused epoch all threads are
// OpenMP's, so BLAS and OpenMP threads never compete for the cores.
static void S(gemm)(int trans_a, int trans_b, fcnn_size M, fcnn_size N, fcnn_size K,
                    const real *A, fcnn_size lda, const real *B, fcnn_size ldb, real *C,
                    fcnn_size ldc, int num_threads) {
    enum CBLAS_TRANSPOSE op_a = trans_a ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE op_b = trans_b ? CblasTrans : CblasNoTrans;
    // Below ~2 MFLOP, or with slices narrower than 64 columns, splitting costs more than it saves.
    fcnn_size slices = N / 64 < num_threads ? N / 64 : num_threads;
    if (slices <= 1 || M * N * K < (fcnn_size)1 << 20) {
        GEMM(CblasRowMajor, op_a, op_b, (blasint)M, (blasint)N, (blasint)K, 1, A, (blasint)lda,
             B, (blasint)ldb, 0, C, (blasint)ldc);
        return;
    }
#pragma omp parallel for schedule(static) num_threads((int)slices)
    for (fcnn_size slice = 0; slice < slices; slice++) {
        fcnn_size j0 = N * slice / slices, j1 = N * (slice + 1) / slices;
        const real *B_slice = trans_b ? B + j0 * ldb : B + j0;
        GEMM(CblasRowMajor, op_a, op_b, (blasint)M, (blasint)(j1 - j0), (blasint)K, 1, A,
             (blasint)lda, B_slice, (blasint)ldb, 0, C + j0, (blasint)ldc);
    }
}

// out (B, H) = inp (B, C) weight (C, H) + bias
static void S(dense_forward)(real *out, const real *inp, const real *weight, const real *bias,
                             fcnn_size B, fcnn_size C, fcnn_size H, int relu, int num_threads) {
    S(gemm)(0, 0, B, H, C, inp, C, weight, H, out, H, num_threads);
    for (fcnn_size b = 0; b < B; b++) {
        real *o = out + b * H;
        for (fcnn_size j = 0; j < H; j++) {
            real z = o[j] + bias[j];
            o[j] = relu && z < 0 ? 0 : z;
        }
    }
}

// images (N, C0) uint8 (scaled by 1/255) or real, labels (N), order (M): the samples of the
// epoch in order, batches of B (the last may be smaller); lrs (num_batches) the rate of each
// step. weights[l] (sizes[l], sizes[l+1]), biases[l] (sizes[l+1]) and the velocities (NULL
// without momentum) are updated in place. -> *loss_sum (sum of per-sample losses), *correct;
// returns the number of steps done: fewer than the batches when a loss was not finite (that
// batch's update is not applied).
fcnn_size S(fcnn_train_epoch)(double *loss_sum, int64_t *correct, real *const *weights,
                              real *const *biases, real *const *weight_velocities,
                              real *const *bias_velocities, void *workspace,
                              const void *images, int images_are_bytes, const int64_t *labels,
                              const int64_t *order, fcnn_size M, const double *lrs,
                              const fcnn_size *sizes, fcnn_size L, fcnn_size B,
                              double weight_decay, double momentum, int nesterov,
                              double sparse_threshold, int num_threads) {
    fcnn_size C0 = sizes[0], H = sizes[1], K = sizes[L], widest = 0, largest_weight = 0;
    for (fcnn_size l = 1; l <= L; l++) widest = sizes[l] > widest ? sizes[l] : widest;
    for (fcnn_size l = 0; l < L; l++) {
        fcnn_size weight = sizes[l] * sizes[l + 1];
        largest_weight = weight > largest_weight ? weight : largest_weight;
    }
    fcnn_size panel_size = (H + BLOCK - 1) / BLOCK * C0 * BLOCK;
    // Carve the workspace in the order fcnn_train_epoch_workspace counted it.
    char *cursor = (char *)workspace;
#define CARVE(type, count)                                                  \
    ((type *)(cursor += round_up((count) * (fcnn_size)sizeof(type)),       \
              cursor - round_up((count) * (fcnn_size)sizeof(type))))
    real *x = CARVE(real, B * C0);  // dense batch; shares room with the CSR values
    real *csr_vals = x;
    real *csc_vals = CARVE(real, B * C0);
    int32_t *cols = CARVE(int32_t, B * C0);
    int32_t *csc_rows = CARVE(int32_t, B * C0);
    fcnn_size *row_start = CARVE(fcnn_size, B + 1);
    fcnn_size *col_start = CARVE(fcnn_size, C0 + 1);
    real *acts[FCNN_MAX_LAYERS + 1];
    for (fcnn_size l = 1; l <= L; l++) acts[l] = CARVE(real, B * sizes[l]);
    real *grad_a = CARVE(real, B * widest);
    real *grad_b = CARVE(real, B * widest);
    real *dweight = CARVE(real, largest_weight);
    real *dbias = CARVE(real, widest);
    real *panels = CARVE(real, panel_size);
    real *velocity_panels = CARVE(real, panel_size);
    real *scratch = CARVE(real, num_threads * (B > C0 ? B : C0) * BLOCK);
#undef CARVE

    const real momentum_r = (real)momentum;
    const int use_velocity = momentum > 0;
    // Sparse batches are possible only from bytes; then the first layer lives in panels.
    const int packed = images_are_bytes && sparse_threshold > 0;
    if (packed) {
        S(repack)(panels, weights[0], C0, H, 0);
        if (use_velocity) S(repack)(velocity_panels, weight_velocities[0], C0, H, 0);
    }
    // Every thread of the epoch is OpenMP's; the BLAS runs on the thread that calls it.
    const int blas_threads = scipy_openblas_get_num_threads();
    scipy_openblas_set_num_threads(1);
    fcnn_size num_batches = (M + B - 1) / B, step;
    double total_loss = 0;
    int64_t total_correct = 0;
    for (step = 0; step < num_batches; step++) {
        fcnn_size first = step * B, rows = M - first < B ? M - first : B;
        const int64_t *indices = order + first;
        const real lr = (real)lrs[step], decay = (real)weight_decay;
        int sparse = S(gather_batch)(x, row_start, cols, csr_vals, col_start, csc_rows,
                                     csc_vals, images, images_are_bytes, indices, rows, C0,
                                     sparse_threshold);
        // forward
        if (packed) {
            S(first_forward)(acts[1], panels, biases[0], row_start, cols, csr_vals, x, sparse,
                             rows, C0, H, L > 1, num_threads);
        } else {
            S(dense_forward)(acts[1], x, weights[0], biases[0], rows, C0, H, L > 1,
                             num_threads);
        }
        for (fcnn_size l = 1; l < L; l++) {
            S(dense_forward)(acts[l + 1], acts[l], weights[l], biases[l], rows, sizes[l],
                             sizes[l + 1], l + 1 < L, num_threads);
        }
        // loss and accuracy, then dlogits = (softmax - onehot) / rows over the logits
        real *logits = acts[L];
        double batch_loss = 0;
        int64_t batch_correct = 0;
        for (fcnn_size b = 0; b < rows; b++) {
            real *row = logits + b * K;
            int64_t label = labels[indices[b]];
            fcnn_size best = 0;
            for (fcnn_size c = 1; c < K; c++) best = row[c] > row[best] ? c : best;
            batch_correct += best == label;
            double maxval = row[best], sum = 0;
            for (fcnn_size c = 0; c < K; c++) sum += exp((double)row[c] - maxval);
            batch_loss += maxval + log(sum) - (double)row[label];
        }
        if (!isfinite(batch_loss)) break;  // stop before this batch's update
        total_loss += batch_loss;
        total_correct += batch_correct;
        S(fcnn_softmax_forward)(logits, logits, rows, K);  // in place: a row is read first
        const real inv_rows = (real)1 / (real)rows;
        for (fcnn_size b = 0; b < rows; b++) {
            real *row = logits + b * K;
            row[labels[indices[b]]] -= 1;
            for (fcnn_size c = 0; c < K; c++) row[c] *= inv_rows;
        }
        // backward through the dense layers; each layer's input gradient is taken before
        // its weights change
        real *dout = logits;
        for (fcnn_size l = L - 1; l >= 1; l--) {
            fcnn_size in = sizes[l], out = sizes[l + 1];
            real *din = dout == grad_a ? grad_b : grad_a;
            S(gemm)(1, 0, in, out, rows, acts[l], in, dout, out, dweight, out, num_threads);
            for (fcnn_size j = 0; j < out; j++) dbias[j] = 0;
            for (fcnn_size b = 0; b < rows; b++) {
                for (fcnn_size j = 0; j < out; j++) dbias[j] += dout[b * out + j];
            }
            S(gemm)(0, 1, rows, in, out, dout, out, weights[l], out, din, in, num_threads);
            for (fcnn_size i = 0; i < rows * in; i++) din[i] = acts[l][i] > 0 ? din[i] : 0;
            S(fcnn_sgd_step)(weights[l], use_velocity ? weight_velocities[l] : NULL, dweight,
                             lr, decay, momentum_r, nesterov, in * out);
            S(fcnn_sgd_step)(biases[l], use_velocity ? bias_velocities[l] : NULL, dbias, lr,
                             decay, momentum_r, nesterov, out);
            dout = din;
        }
        // the first layer
        for (fcnn_size j = 0; j < H; j++) dbias[j] = 0;
        for (fcnn_size b = 0; b < rows; b++) {
            for (fcnn_size j = 0; j < H; j++) dbias[j] += dout[b * H + j];
        }
        if (packed) {
            S(first_update)(panels, use_velocity ? velocity_panels : NULL, scratch, col_start,
                            csc_rows, csc_vals, x, sparse, dout, rows, C0, H, lr, decay,
                            momentum_r, nesterov, num_threads);
        } else {
            S(gemm)(1, 0, C0, H, rows, x, C0, dout, H, dweight, H, num_threads);
            S(fcnn_sgd_step)(weights[0], use_velocity ? weight_velocities[0] : NULL, dweight,
                             lr, decay, momentum_r, nesterov, C0 * H);
        }
        S(fcnn_sgd_step)(biases[0], use_velocity ? bias_velocities[0] : NULL, dbias, lr, decay,
                         momentum_r, nesterov, H);
    }
    scipy_openblas_set_num_threads(blas_threads);
    if (packed) {
        S(repack)(panels, weights[0], C0, H, 1);
        if (use_velocity) S(repack)(velocity_panels, weight_velocities[0], C0, H, 1);
    }
    *loss_sum = total_loss;
    *correct = total_correct;
    return step;
}

#undef BLOCK
#undef VECTORS
#undef LANES
#undef VECTOR

#endif  // FCNN_TEMPLATE
