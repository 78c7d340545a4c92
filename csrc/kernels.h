// fcnn kernels: plain C over raw pointers and sizes; no Python anywhere.
//
// Size legend (one letter per size, as in every shape comment below):
//   B  = batch size (rows)
//   C  = input features (columns of the input)
//   OC = output features (classes, for the loss)
//   N  = number of elements of a parameter tensor
//   M, K = the other sizes of a matrix product (C (M, N) = A (M, K) B (K, N))
//   H  = width of a hidden layer (the fused epoch's first, or the one dropout acts on)
// Arrays are dense and row-major (C order). Each kernel exists as name_f32 and
// name_f64, both generated from one source by template.h.
#ifndef FCNN_KERNELS_H
#define FCNN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

typedef ptrdiff_t fcnn_size;

// Largest size a BLAS call accepts: the OpenBLAS we link uses 32-bit indices.
#define FCNN_BLAS_MAX_SIZE ((fcnn_size)2147483647)

// Most Linear layers a fused epoch takes, and most threads any kernel runs on.
#define FCNN_MAX_LAYERS 64
#define FCNN_MAX_THREADS 256

// A plain MLP, Linear (ReLU, [Dropout], Linear)*, as the fused epoch trains it: L layers of
// sizes (L + 1); weights[l] (sizes[l], sizes[l+1]) and biases[l] (sizes[l+1]) are real * of
// the call's dtype, updated in place, as are the velocities (NULL without momentum).
// dropout_rates[l] > 0 puts dropout (dropout.c) after the ReLU of layer l < L - 1: batch i of
// the call draws the mask of step dropout_steps[l] + i under dropout_seeds[l]; 0 (as a
// zero-initialised struct has it) means none.
typedef struct {
    fcnn_size num_layers;
    fcnn_size sizes[FCNN_MAX_LAYERS + 1];
    void *weights[FCNN_MAX_LAYERS];
    void *biases[FCNN_MAX_LAYERS];
    void *weight_velocities[FCNN_MAX_LAYERS];
    void *bias_velocities[FCNN_MAX_LAYERS];
    double dropout_rates[FCNN_MAX_LAYERS];
    uint64_t dropout_seeds[FCNN_MAX_LAYERS];
    uint64_t dropout_steps[FCNN_MAX_LAYERS];
} fcnn_mlp;

// Strengths of the random warp of fcnn_augment, each 0 to turn its transform off: translation
// uniform in +-translate pixels (x and y), rotation in +-rotate degrees, scale 1 + uniform
// +-scale (scale < 1), shear factor uniform in +-shear, and an elastic distortion of
// elastic_alpha pixels smoothed by a Gaussian of std elastic_sigma pixels (off if either is 0).
typedef struct {
    double translate, rotate, scale, shear, elastic_alpha, elastic_sigma;
} fcnn_augment_settings;

// The augmentation of a fused epoch's batches: the images are (N, height, width) uint8 and the
// sample at position p of order is warped with the stream first_stream + p of seed.
typedef struct {
    fcnn_augment_settings settings;
    uint64_t seed;
    int64_t first_stream;
    fcnn_size height, width;
} fcnn_epoch_augment;

// The samples of a fused epoch: images (N, sizes[0]) uint8 (scaled by 1/255) or of the
// call's dtype, labels (N), and order (num_samples): which images, in which order, in
// batches of batch_size (the last may be smaller); augment: NULL, or how to warp each batch.
typedef struct {
    const void *images;
    int images_are_bytes;
    const int64_t *labels;
    const int64_t *order;
    fcnn_size num_samples;
    fcnn_size batch_size;
    const fcnn_epoch_augment *augment;
} fcnn_epoch_data;

// The SGD rule of every step (sgd_rule.h); lrs holds one rate per batch.
typedef struct {
    const double *lrs;
    double weight_decay;
    double momentum;
    int nesterov;
} fcnn_sgd_settings;

#define FCNN_DECLARE_KERNELS(real, S)                                                        \
    void S(fcnn_gemm)(real *C, const real *A, const real *B, int trans_a, int trans_b,       \
                      fcnn_size M, fcnn_size N, fcnn_size K, fcnn_size lda, fcnn_size ldb,   \
                      fcnn_size ldc, int num_threads);                                       \
    void S(fcnn_linear_forward)(real *out, const real *inp, const real *weight,              \
                                const real *bias, fcnn_size B, fcnn_size C, fcnn_size OC,    \
                                int num_threads);                                            \
    void S(fcnn_add_bias)(real *out, const real *bias, fcnn_size B, fcnn_size OC);           \
    void S(fcnn_bias_backward)(real *dbias, const real *dout, fcnn_size B, fcnn_size OC);   \
    void S(fcnn_column_sums)(real *sums, const real *x, fcnn_size B, fcnn_size N,            \
                             fcnn_size ld);                                                  \
    void S(fcnn_linear_backward)(real *dinp, real *dweight, real *dbias, const real *dout,   \
                                 const real *inp, const real *weight, fcnn_size B,           \
                                 fcnn_size C, fcnn_size OC, int num_threads);                \
    void S(fcnn_relu_forward)(real *out, const real *inp, fcnn_size N);                     \
    void S(fcnn_relu_backward)(real *dinp, const real *dout, const real *inp, fcnn_size N);  \
    void S(fcnn_sigmoid_forward)(real *out, const real *inp, fcnn_size N);                  \
    void S(fcnn_sigmoid_backward)(real *dinp, const real *dout, const real *out,             \
                                  fcnn_size N);                                              \
    void S(fcnn_tanh_forward)(real *out, const real *inp, fcnn_size N);                     \
    void S(fcnn_tanh_backward)(real *dinp, const real *dout, const real *out, fcnn_size N);  \
    void S(fcnn_softmax_forward)(real *probs, const real *logits, fcnn_size B, fcnn_size C); \
    void S(fcnn_softmax_backward)(real *dinp, const real *dout, const real *probs,           \
                                  fcnn_size B, fcnn_size C);                                 \
    void S(fcnn_softmax_cross_entropy_forward)(double *loss, const real *logits,             \
                                               const int64_t *labels, fcnn_size B,           \
                                               fcnn_size C);                                 \
    void S(fcnn_softmax_cross_entropy_backward)(real *dlogits, const real *logits,           \
                                                const int64_t *labels, fcnn_size B,          \
                                                fcnn_size C);                                \
    void S(fcnn_sgd_step)(real *param, real *velocity, const real *grad, real lr,            \
                          real weight_decay, real momentum, int nesterov, fcnn_size N);      \
    fcnn_size S(fcnn_train_epoch)(double *loss_sum, int64_t *correct, const fcnn_mlp *net,   \
                                  void *workspace, const fcnn_epoch_data *data,              \
                                  const fcnn_sgd_settings *sgd, double sparse_threshold,     \
                                  int num_threads);

#define FCNN_SUFFIX_F32(name) name##_f32
#define FCNN_SUFFIX_F64(name) name##_f64
FCNN_DECLARE_KERNELS(float, FCNN_SUFFIX_F32)
FCNN_DECLARE_KERNELS(double, FCNN_SUFFIX_F64)

// dropout.c: inverted dropout of rate p in [0, 1), mask drawn from the stream key (random.h).
#define FCNN_DECLARE_DROPOUT(real, S)                                                        \
    void S(fcnn_dropout_forward)(real *out, const real *inp, fcnn_size B, fcnn_size H,       \
                                 double p, uint64_t key, int num_threads);                   \
    void S(fcnn_dropout_backward)(real *dinp, const real *dout, fcnn_size B, fcnn_size H,    \
                                  double p, uint64_t key, int num_threads);                  \
    void S(fcnn_dropout_columns)(real *out, const real *inp, fcnn_size B, fcnn_size H,       \
                                 fcnn_size j0, fcnn_size width, double p, uint64_t key);     \
    void S(fcnn_relu_dropout_backward)(real *dinp, const real *dout, const real *out,        \
                                       fcnn_size N, double p);
FCNN_DECLARE_DROPOUT(float, FCNN_SUFFIX_F32)
FCNN_DECLARE_DROPOUT(double, FCNN_SUFFIX_F64)

// Bytes of workspace fcnn_train_epoch needs for net, batches of B, item = sizeof(real), on
// num_threads threads, with augment (or NULL); -1 when that does not fit in a fcnn_size.
fcnn_size fcnn_train_epoch_workspace(const fcnn_mlp *net, fcnn_size B, fcnn_size item,
                                     int num_threads, const fcnn_epoch_augment *augment);

// Width in bytes of the column blocks (panels) of the fused epoch's first layer.
#define FCNN_PANEL_BYTES 256

// ----------------------------------------------------------------------------
// threads.c

// Threads every kernel runs on: fcnn_set_threads's count, process-wide, or else OpenMP's
// default of the calling thread; always in [1, FCNN_MAX_THREADS].
int fcnn_get_threads(void);

// Sets the process-wide thread count (clamped to [1, FCNN_MAX_THREADS]), and the BLAS's.
void fcnn_set_threads(long long count);

// Brackets a fused epoch: the BLAS at one thread from the first call in flight to the last.
void fcnn_blas_scope_enter(void);
void fcnn_blas_scope_leave(void);

// The BLAS's thread count now.
int fcnn_blas_threads(void);

// The calling thread's index within its OpenMP team (0 outside one).
int fcnn_thread_index(void);

// The vector width, in bytes, of the kernels that come in three (the first layer's, the
// elastic smoothing): the one fcnn_force_vector_bytes set, else the CPU's (built by GCC for
// x86-64): 64 with AVX-512F, 32 with AVX2 and FMA (x86-64-v3), 16 without; built with
// FCNN_NO_CLONES, the build's instruction set's, the same way; 32 elsewhere.
int fcnn_vector_bytes(void);

// For tests: those kernels use 16-, 32- or 64-byte vectors whatever the CPU, or (0) the
// CPU's again. Every width runs on any CPU (each is compiled for several instruction sets
// and the CPU's own is called), if slowly where it is wider than the registers.
// Returns the previous setting.
int fcnn_force_vector_bytes(int bytes);

// The forced width (fcnn_force_vector_bytes), or 0
int fcnn_forced_vector_bytes(void);

// Flush-to-zero and denormals-are-zero on for the calling thread; returns the mode to restore.
unsigned fcnn_fp_enter(void);

// Restores the mode fcnn_fp_enter returned.
void fcnn_fp_leave(unsigned saved);

// Hot loops get AVX-512 and AVX2+FMA clones picked at load time, so a portable build still
// runs fast. FCNN_HOT_AVX2 leaves AVX-512 out, for kernels that pick their width themselves.
// -DFCNN_NO_CLONES compiles every loop for the build's own instruction set alone: what a CPU
// without AVX2 runs, measured on any (benchmarks/bench_kernel.py --plain).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FCNN_NO_CLONES)
#define FCNN_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define FCNN_HOT_AVX2 __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FCNN_HOT
#define FCNN_HOT_AVX2
#endif

// Exponential learning-rate schedule: initial_lr * decay^(step / stage_length),
// the exponent floored when staircase is non-zero. Dtype-free: computed in double.
double fcnn_exponential_lr(double initial_lr, int64_t step, int64_t stage_length, double decay,
                           int staircase);

// ----------------------------------------------------------------------------
// augment.c

// Largest elastic_sigma accepted: its kernel reaches 3 sigma.
#define FCNN_MAX_ELASTIC_SIGMA 1000.0

// Bytes of workspace fcnn_augment needs for images (H, W) on num_threads threads; -1 when
// that does not fit in a fcnn_size.
fcnn_size fcnn_augment_workspace(fcnn_size H, fcnn_size W, const fcnn_augment_settings *settings,
                                 int num_threads);

// images (N, H, W) uint8, indices (B) -> out (B, H, W): image indices[b] warped with the
// random stream first_stream + b of seed (random.h); bitwise the same on any thread count.
void fcnn_augment(uint8_t *out, void *workspace, const uint8_t *images, const int64_t *indices,
                  fcnn_size B, fcnn_size H, fcnn_size W, const fcnn_augment_settings *settings,
                  uint64_t seed, int64_t first_stream, int num_threads);
// fcnn_augment in pieces, for a caller that shares the images out among its own threads:
// _prepare sets up the workspace (sized for num_threads) once; then _rows warps images
// [b0, b1) of the batch on the calling thread, with the scratch of thread `thread`
// (< num_threads), as often as needed.
void fcnn_augment_prepare(void *workspace, fcnn_size H, fcnn_size W,
                          const fcnn_augment_settings *settings, int num_threads);
void fcnn_augment_rows(uint8_t *out, void *workspace, int thread, const uint8_t *images,
                       const int64_t *indices, fcnn_size b0, fcnn_size b1, fcnn_size H,
                       fcnn_size W, const fcnn_augment_settings *settings, uint64_t seed,
                       int64_t first_stream);

#endif  // FCNN_KERNELS_H
