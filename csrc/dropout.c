// Inverted dropout on hidden units. The mask is never stored: unit i of a (B, H) batch (i =
// b * H + j) is kept iff the i-th uniform of the stream `key` (random.h) is >= p, so the
// backward pass, the fused epoch and fcnn/reference.py all draw it again from (key, i), on
// any number of threads, bit for bit. Kept units are scaled by 1 / (1 - p), so that the
// expected activation is unchanged and inference needs no rescaling.
#ifndef FCNN_TEMPLATE
// Units below which a mask is drawn on one thread: a fork costs more than it saves there.
#define DROPOUT_SPLIT_UNITS ((fcnn_size)1 << 14)
#define FCNN_TEMPLATE "dropout.c"
#include "template.h"
#else

#include "random.h"

// ----------------------------------------------------------------------------
// Units [from, to) of a batch, i being the unit's index in the whole (B, H) batch: out[i] <-
// inp[i] * scale where the i-th number of key, shifted right by 11, is >= threshold, else 0.
FCNN_HOT static void S(dropout_units)(real *out, const real *inp, fcnn_size from, fcnn_size to,
                                      int64_t threshold, real scale, uint64_t key) {
    // Selected, then scaled (0 scaled is 0): a product under a condition does not vectorize.
    for (fcnn_size i = from; i < to; i++) {
        const int64_t m = (int64_t)(fcnn_random_bits(key, (uint64_t)i) >> 11);
        const real value = inp[i];
        out[i] = (m >= threshold ? value : 0) * scale;
    }
}

// The scale rounded once to the dtype, as the twin does, so both multiply alike.
static real S(dropout_scale)(double p) { return (real)(1.0 / (1.0 - p)); }

// The uniform is m 2^-53 for the integer m = bits >> 11 (fcnn_random_uniform), and m 2^-53 >= p
// exactly when m >= ceil(p 2^53), a product by a power of two and so exact: the same test in
// integers, without the int64-to-double conversion AVX2 lacks.
static int64_t S(dropout_threshold)(double p) { return (int64_t)ceil(p * 0x1.0p53); }

// inp (B, H) -> out (B, H) = inp / (1 - p) where kept, else 0; p in [0, 1); out may be inp.
// Split across num_threads threads when the batch is large; the mask is the same on any number.
void S(fcnn_dropout_forward)(real *out, const real *inp, fcnn_size B, fcnn_size H, double p,
                             uint64_t key, int num_threads) {
    const real scale = S(dropout_scale)(p);
    const int64_t threshold = S(dropout_threshold)(p);
    const fcnn_size N = B * H;
    // A 64 x 1024 batch draws its mask in about 0.4 ms on one Zen 1 core: worth a fork.
    if (num_threads <= 1 || N < DROPOUT_SPLIT_UNITS) {
        S(dropout_units)(out, inp, 0, N, threshold, scale, key);
        return;
    }
#pragma omp parallel num_threads(num_threads)
    {
        unsigned saved_fp = fcnn_fp_enter();
#pragma omp for schedule(static)
        for (int part = 0; part < num_threads; part++) {
            S(dropout_units)(out, inp, N * part / num_threads, N * (part + 1) / num_threads,
                             threshold, scale, key);
        }
        fcnn_fp_leave(saved_fp);
    }
}

// Columns [j0, j0 + width) of every row of out and inp (B, H), as fcnn_dropout_forward treats
// them: the mask of a block of units, for a kernel that owns that block.
void S(fcnn_dropout_columns)(real *out, const real *inp, fcnn_size B, fcnn_size H, fcnn_size j0,
                             fcnn_size width, double p, uint64_t key) {
    const real scale = S(dropout_scale)(p);
    const int64_t threshold = S(dropout_threshold)(p);
    for (fcnn_size b = 0; b < B; b++) {
        S(dropout_units)(out, inp, b * H + j0, b * H + j0 + width, threshold, scale, key);
    }
}

// The backward through a ReLU and the dropout after it, from the dropout's output out (N):
// dinp (N) = dout / (1 - p) where out > 0, else 0; dinp may be dout. A dropped unit's output
// is exactly 0, so out > 0 only where the mask kept the unit and the ReLU passed it: the same
// bits as fcnn_dropout_backward then fcnn_relu_backward on out, without drawing the mask again.
FCNN_HOT void S(fcnn_relu_dropout_backward)(real *dinp, const real *dout, const real *out,
                                            fcnn_size N, double p) {
    const real scale = S(dropout_scale)(p);
    // Selected, then scaled (0 scaled is 0): a product under a condition does not vectorize.
    for (fcnn_size i = 0; i < N; i++) {
        real gradient = dout[i];
        dinp[i] = (out[i] > 0 ? gradient : 0) * scale;
    }
}

// dout (B, H) -> dinp (B, H) = dout / (1 - p) where kept, else 0; dinp may be dout.
// The layer is linear with the mask of (key, p): its backward is its forward on dout.
void S(fcnn_dropout_backward)(real *dinp, const real *dout, fcnn_size B, fcnn_size H, double p,
                              uint64_t key, int num_threads) {
    S(fcnn_dropout_forward)(dinp, dout, B, H, p, key, num_threads);
}
#endif  // FCNN_TEMPLATE
