// Instantiates the kernel file named by FCNN_TEMPLATE once for float and once
// for double, so the two dtypes come from one source. Inside the template:
//   real     the element type
//   S(name)  name with the dtype suffix (_f32 / _f64)
//   GEMM     the BLAS matrix product for that type
//   EXP      exp() for that type
//   TANH     tanh() for that type
#include <math.h>

#include "cblas.h"
#include "kernels.h"

#define real float
#define S(name) name##_f32
#define GEMM scipy_cblas_sgemm
#define EXP expf
#define TANH tanhf
#include FCNN_TEMPLATE
#undef real
#undef S
#undef GEMM
#undef EXP
#undef TANH

#define real double
#define S(name) name##_f64
#define GEMM scipy_cblas_dgemm
#define EXP exp
#define TANH tanh
#include FCNN_TEMPLATE
#undef real
#undef S
#undef GEMM
#undef EXP
#undef TANH
