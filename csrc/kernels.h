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

#define FCNN_SUFFIX_F32(name) name##_f32
#define FCNN_SUFFIX_F64(name) name##_f64
FCNN_DECLARE_KERNELS(float, FCNN_SUFFIX_F32)
FCNN_DECLARE_KERNELS(double, FCNN_SUFFIX_F64)

// Exponential learning-rate schedule: initial_lr * decay^(step / stage_length),
// the exponent floored when staircase is non-zero. Dtype-free: computed in double.
double fcnn_exponential_lr(double initial_lr, int64_t step, int64_t stage_length, double decay,
                           int staircase);

#endif  // FCNN_KERNELS_H
