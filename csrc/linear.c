// Linear layer kernels: out = inp @ weight + bias and its gradients, and the matrix product
// they run on, split by columns across fcnn's threads.
// weight is (C, OC), as in the original project (inputs along rows), not PyTorch's (OC, C).
#ifndef FCNN_TEMPLATE
#define FCNN_TEMPLATE "linear.c"
#include "template.h"
#else

// ----------------------------------------------------------------------------
// the matrix product

// A (M, K) or (K, M) when trans_a, B (K, N) or (N, K) when trans_b -> C (M, N) = op(A) op(B),
// row-major, with leading dimensions lda, ldb, ldc. When the BLAS runs on one thread (always
// inside a fused epoch, see threads.c), the columns of C are split across num_threads OpenMP
// threads, each running a one-thread BLAS call on its slice, so BLAS and OpenMP threads never
// compete for the cores; otherwise the BLAS threads the product itself. Every element of C is
// summed in the BLAS's order whatever the split.
void S(fcnn_gemm)(real *C, const real *A, const real *B, int trans_a, int trans_b, fcnn_size M,
                  fcnn_size N, fcnn_size K, fcnn_size lda, fcnn_size ldb, fcnn_size ldc,
                  int num_threads) {
    enum CBLAS_TRANSPOSE op_a = trans_a ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE op_b = trans_b ? CblasTrans : CblasNoTrans;
    // Slices of at least 64 columns, and no split below ~1 MFLOP: splitting costs more there.
    fcnn_size slices = N / 64 < num_threads ? N / 64 : num_threads;
    if (slices <= 1 || M * N * K < (fcnn_size)1 << 20 || fcnn_blas_threads() != 1) {
        GEMM(CblasRowMajor, op_a, op_b, (blasint)M, (blasint)N, (blasint)K, 1, A, (blasint)lda,
             B, (blasint)ldb, 0, C, (blasint)ldc);
        return;
    }
#pragma omp parallel num_threads((int)slices)
    {
        unsigned saved_fp = fcnn_fp_enter();
#pragma omp for schedule(static)
        for (fcnn_size slice = 0; slice < slices; slice++) {
            fcnn_size j0 = N * slice / slices, j1 = N * (slice + 1) / slices;
            const real *B_slice = trans_b ? B + j0 * ldb : B + j0;
            GEMM(CblasRowMajor, op_a, op_b, (blasint)M, (blasint)(j1 - j0), (blasint)K, 1, A,
                 (blasint)lda, B_slice, (blasint)ldb, 0, C + j0, (blasint)ldc);
        }
        fcnn_fp_leave(saved_fp);
    }
}

// ----------------------------------------------------------------------------
// inp (B, C), weight (C, OC), bias (OC) -> out (B, OC)
void S(fcnn_linear_forward)(real *out, const real *inp, const real *weight, const real *bias,
                            fcnn_size B, fcnn_size C, fcnn_size OC, int num_threads) {
    S(fcnn_gemm)(out, inp, weight, 0, 0, B, OC, C, C, OC, OC, num_threads);
    S(fcnn_add_bias)(out, bias, B, OC);
}

// out (B, OC), bias (OC) -> out + bias in every row
void S(fcnn_add_bias)(real *out, const real *bias, fcnn_size B, fcnn_size OC) {
    for (fcnn_size b = 0; b < B; b++) {
        real *out_row = out + b * OC;
        for (fcnn_size o = 0; o < OC; o++) out_row[o] += bias[o];
    }
}

// ----------------------------------------------------------------------------
// x (B, N) with rows ld apart -> sums (N) = column sums of x, over the rows ascending
void S(fcnn_column_sums)(real *sums, const real *x, fcnn_size B, fcnn_size N, fcnn_size ld) {
    for (fcnn_size j = 0; j < N; j++) sums[j] = 0;
    for (fcnn_size b = 0; b < B; b++) {
        const real *row = x + b * ld;
        for (fcnn_size j = 0; j < N; j++) sums[j] += row[j];
    }
}

// dout (B, OC) -> dbias (OC) = column sums of dout
void S(fcnn_bias_backward)(real *dbias, const real *dout, fcnn_size B, fcnn_size OC) {
    S(fcnn_column_sums)(dbias, dout, B, OC, OC);
}

// dout (B, OC), inp (B, C), weight (C, OC) -> dweight (C, OC), dbias (OC), dinp (B, C) or NULL
void S(fcnn_linear_backward)(real *dinp, real *dweight, real *dbias, const real *dout,
                             const real *inp, const real *weight, fcnn_size B, fcnn_size C,
                             fcnn_size OC, int num_threads) {
    // dweight = inp^T dout
    S(fcnn_gemm)(dweight, inp, dout, 1, 0, C, OC, B, C, OC, OC, num_threads);
    S(fcnn_bias_backward)(dbias, dout, B, OC);
    // dinp = dout weight^T, skipped for the first layer whose input needs no gradient
    if (dinp != NULL) S(fcnn_gemm)(dinp, dout, weight, 0, 1, B, C, OC, OC, OC, C, num_threads);
}

#endif  // FCNN_TEMPLATE
