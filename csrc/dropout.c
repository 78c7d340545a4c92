// Inverted dropout on hidden units. The mask is never stored: unit i of a (B, H) batch (i =
// b * H + j) is kept iff the i-th uniform of the stream `key` (random.h) is >= p, so the
// backward pass, the fused epoch and fcnn/reference.py all draw it again from (key, i), on
// any number of threads, bit for bit. Kept units are scaled by 1 / (1 - p), so that the
// expected activation is unchanged and inference needs no rescaling.
#ifndef FCNN_TEMPLATE
#define FCNN_TEMPLATE "dropout.c"
#include "template.h"
#else

#include "random.h"

// ----------------------------------------------------------------------------
// inp (B, H) -> out (B, H) = inp / (1 - p) where kept, else 0; p in [0, 1); out may be inp
FCNN_HOT void S(fcnn_dropout_forward)(real *out, const real *inp, fcnn_size B, fcnn_size H,
                                      double p, uint64_t key) {
    // The scale rounded once to the dtype, as the twin does, so both multiply alike.
    const real scale = (real)(1.0 / (1.0 - p));
    for (fcnn_size i = 0; i < B * H; i++) {
        out[i] = fcnn_random_uniform(key, (uint64_t)i) >= p ? inp[i] * scale : 0;
    }
}

// dout (B, H) -> dinp (B, H) = dout / (1 - p) where kept, else 0; dinp may be dout.
// The layer is linear with the mask of (key, p): its backward is its forward on dout.
void S(fcnn_dropout_backward)(real *dinp, const real *dout, fcnn_size B, fcnn_size H,
                              double p, uint64_t key) {
    S(fcnn_dropout_forward)(dinp, dout, B, H, p, key);
}

#endif  // FCNN_TEMPLATE
