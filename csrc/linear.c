// Linear layer kernels: out = inp @ weight + bias and its gradients, through BLAS.
// weight is (C, OC), as in the original project (inputs along rows), not PyTorch's (OC, C).
#ifndef FCNN_TEMPLATE
#define FCNN_TEMPLATE "linear.c"
#include "template.h"
#else

// ----------------------------------------------------------------------------
// inp (B, C), weight (C, OC), bias (OC) -> out (B, OC)
void S(fcnn_linear_forward)(real *out, const real *inp, const real *weight, const real *bias,
                            fcnn_size B, fcnn_size C, fcnn_size OC) {
    GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)B, (blasint)OC, (blasint)C, 1, inp,
         (blasint)C, weight, (blasint)OC, 0, out, (blasint)OC);
    for (fcnn_size b = 0; b < B; b++) {
        real *out_row = out + b * OC;
        for (fcnn_size o = 0; o < OC; o++) out_row[o] += bias[o];
    }
}

// ----------------------------------------------------------------------------
// dout (B, OC), inp (B, C), weight (C, OC) -> dweight (C, OC), dbias (OC), dinp (B, C) or NULL
void S(fcnn_linear_backward)(real *dinp, real *dweight, real *dbias, const real *dout,
                             const real *inp, const real *weight, fcnn_size B, fcnn_size C,
                             fcnn_size OC) {
    // dweight = inp^T dout
    GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)C, (blasint)OC, (blasint)B, 1, inp,
         (blasint)C, dout, (blasint)OC, 0, dweight, (blasint)OC);
    // dbias = column sums of dout
    for (fcnn_size o = 0; o < OC; o++) dbias[o] = 0;
    for (fcnn_size b = 0; b < B; b++) {
        const real *dout_row = dout + b * OC;
        for (fcnn_size o = 0; o < OC; o++) dbias[o] += dout_row[o];
    }
    // dinp = dout weight^T, skipped for the first layer whose input needs no gradient
    if (dinp != NULL) {
        GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)B, (blasint)C, (blasint)OC, 1,
             dout, (blasint)OC, weight, (blasint)OC, 0, dinp, (blasint)C);
    }
}

#endif  // FCNN_TEMPLATE
