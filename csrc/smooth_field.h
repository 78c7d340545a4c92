// The elastic field's Gaussian smoothing, included by augment.c once per vector width: 64-byte
// vectors where the CPU has AVX-512, 32-byte ones where it has AVX2, 16-byte ones elsewhere.
// Defined by the includer: SMOOTH(name), the variant's name; SMOOTH_TARGETS, its
// target_clones attribute (or nothing); SMOOTH_VECTOR_BYTES, a divisor of LANES floats. No
// include guard: included three times.
//
// One width for every clone was slow in the others: where registers hold 32 bytes, GCC kept a
// 64-byte sum carried across the taps on the stack and moved it through general registers,
// and the smoothing ran several times slower on Zen 1 (AVX2) than the sampling beside it.

typedef float SMOOTH(vector) __attribute__((vector_size(SMOOTH_VECTOR_BYTES)));
#define SMOOTH_LANES ((fcnn_size)(SMOOTH_VECTOR_BYTES / sizeof(float)))
#define SMOOTH_CHAINS (int)(128 / SMOOTH_VECTOR_BYTES)

static inline __attribute__((always_inline)) SMOOTH(vector) SMOOTH(load)(const float *p) {
    SMOOTH(vector) v;
    memcpy(&v, p, sizeof v);
    return v;
}

// out (n vectors) <- the taps of in (n vectors): at k, in[k] weights[0] + the sum over t =
// 1..P, in that order, of (in[k - t step] + in[k + t step]) weights[t], each pair summed first
// (the kernel is symmetric). n is a constant, SMOOTH_CHAINS (32 floats) or 1: the sums of a
// block are independent chains, so that no tap waits for the one before it (one chain at a
// time waited for the adder's latency at every tap, and ran at a fraction of its throughput).
static inline __attribute__((always_inline)) void SMOOTH(taps)(float *out, const float *in,
                                                               fcnn_size step,
                                                               const float *weights, fcnn_size P,
                                                               int n) {
    SMOOTH(vector) sum[SMOOTH_CHAINS];
    for (int v = 0; v < n; v++) sum[v] = weights[0] * SMOOTH(load)(in + v * SMOOTH_LANES);
    for (fcnn_size t = 1; t <= P; t++) {
        for (int v = 0; v < n; v++) {
            const float *at = in + v * SMOOTH_LANES;
            const SMOOTH(vector) pair = SMOOTH(load)(at - t * step) + SMOOTH(load)(at + t * step);
            sum[v] = sum[v] + weights[t] * pair;
        }
    }
    for (int v = 0; v < n; v++) memcpy(out + v * SMOOTH_LANES, &sum[v], sizeof sum[v]);
}

// out (n) <- the taps of in (n), step apart; n a whole number of vectors
static inline __attribute__((always_inline)) void SMOOTH(pass)(float *out, const float *in,
                                                               fcnn_size n, fcnn_size step,
                                                               const float *weights,
                                                               fcnn_size P) {
    const fcnn_size block = SMOOTH_CHAINS * SMOOTH_LANES;
    fcnn_size k = 0;
    for (; k + block <= n; k += block) {
        SMOOTH(taps)(out + k, in + k, step, weights, P, SMOOTH_CHAINS);
    }
    for (; k < n; k += SMOOTH_LANES) SMOOTH(taps)(out + k, in + k, step, weights, P, 1);
}

// smooth (H, V), whose first C floats hold a field (H, W), <- the field smoothed separably by
// the taps weights (P + 1), zeros outside: through padded (H, V + 2P), whose columns outside
// [P, P + W) are zero, and across (H + 2P, V), whose first and last P rows are zero. Columns
// [W, V) of smooth and of across's other rows get numbers that nothing reads. Each lane (a
// pixel) does the twin's arithmetic in the twin's order, whatever the width.
SMOOTH_TARGETS static void SMOOTH(smooth_field)(float *smooth, float *padded, float *across,
                                                const float *weights, fcnn_size H, fcnn_size W,
                                                fcnn_size P) {
    const fcnn_size V = round_to_lanes(W), row = V + 2 * P;
    for (fcnn_size i = 0; i < H; i++) {
        memcpy(padded + i * row + P, smooth + i * W, (size_t)W * sizeof(float));
    }
    // Along rows, then along columns, where the rows are contiguous: one flat pass over the
    // H x V sums.
    for (fcnn_size i = 0; i < H; i++) {
        SMOOTH(pass)(across + (i + P) * V, padded + i * row + P, V, 1, weights, P);
    }
    SMOOTH(pass)(smooth, across + P * V, H * V, V, weights, P);
}

#undef SMOOTH_LANES
#undef SMOOTH_CHAINS
