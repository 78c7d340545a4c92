// fcnn kernels: plain C over raw pointers and sizes; no Python anywhere.
//
// Size legend (one letter per size, as in every shape comment below):
//   B  = batch size (rows)
//   C  = input features (columns of the input)
//   OC = output features (classes, for the loss)
//   N  = number of elements of a parameter tensor
// Arrays are dense and row-major (C order). Each kernel exists as name_f32 and
// name_f64, both generated from one source by template.h.
#ifndef FCNN_KERNELS_H
#define FCNN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

typedef ptrdiff_t fcnn_size;

// Largest size a BLAS call accepts: the OpenBLAS we link uses 32-bit indices.
#define FCNN_BLAS_MAX_SIZE ((fcnn_size)2147483647)

#define FCNN_DECLARE_KERNELS(real, S)                                                        \
    void S(fcnn_linear_forward)(real *out, const real *inp, const real *weight,              \
                                const real *bias, fcnn_size B, fcnn_size C, fcnn_size OC);   \
    void S(fcnn_linear_backward)(real *dinp, real *dweight, real *dbias, const real *dout,   \
                                 const real *inp, const real *weight, fcnn_size B,           \
                                 fcnn_size C, fcnn_size OC);                                 \
    void S(fcnn_relu_forward)(real *out, const real *inp, fcnn_size N);                     \
    void S(fcnn_relu_backward)(real *dinp, const real *dout, const real *inp, fcnn_size N);  \
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
                          real weight_decay, real momentum, int nesterov, fcnn_size N);

#define FCNN_DECLARE_EPOCH(real, S)                                                          \
    fcnn_size S(fcnn_train_epoch)(                                                           \
        double *loss_sum, int64_t *correct, real *const *weights, real *const *biases,       \
        real *const *weight_velocities, real *const *bias_velocities, void *workspace,       \
        const void *images, int images_are_bytes, const int64_t *labels,                     \
        const int64_t *order, fcnn_size M, const double *lrs, const fcnn_size *sizes,        \
        fcnn_size L, fcnn_size B, double weight_decay, double momentum, int nesterov,        \
        double sparse_threshold, int num_threads);

#define FCNN_SUFFIX_F32(name) name##_f32
#define FCNN_SUFFIX_F64(name) name##_f64
FCNN_DECLARE_KERNELS(float, FCNN_SUFFIX_F32)
FCNN_DECLARE_KERNELS(double, FCNN_SUFFIX_F64)
FCNN_DECLARE_EPOCH(float, FCNN_SUFFIX_F32)
FCNN_DECLARE_EPOCH(double, FCNN_SUFFIX_F64)

// Most Linear layers a fused epoch takes.
#define FCNN_MAX_LAYERS 64

// Bytes of workspace fcnn_train_epoch needs: sizes (L+1), batch B, item = sizeof(real),
// and the threads it will run on.
fcnn_size fcnn_train_epoch_workspace(const fcnn_size *sizes, fcnn_size L, fcnn_size B,
                                     fcnn_size item, int num_threads);

// Width in bytes of the column blocks (panels) of the fused epoch's first layer.
#define FCNN_PANEL_BYTES 256

// The calling thread's index within its OpenMP team (0 outside one).
int fcnn_thread_index(void);

// Threads a kernel uses when told 0: OpenMP's current setting (1 without OpenMP).
int fcnn_default_threads(void);

// Sets the threads of fcnn's OpenMP loops and of the BLAS together.
void fcnn_set_threads(int count);

// Hot loops get an AVX2+FMA clone picked at load time, so a portable build still runs fast.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define FCNN_HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FCNN_HOT
#endif

// Exponential learning-rate schedule: initial_lr * decay^(step / stage_length),
// the exponent floored when staircase is non-zero. Dtype-free: computed in double.
double fcnn_exponential_lr(double initial_lr, int64_t step, int64_t stage_length, double decay,
                           int staircase);

#endif  // FCNN_KERNELS_H
