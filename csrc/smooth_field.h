// The elastic field's Gaussian smoothing, included by augment.c once per vector width: 64-byte
// vectors where the CPU has AVX-512, 32-byte ones elsewhere. Defined by the includer:
// SMOOTH(name), the variant's name; SMOOTH_TARGETS, its target_clones attribute;
// SMOOTH_VECTOR_BYTES, a divisor of LANES floats. No include guard: included twice.
//
// One width for every clone was slow in the others: where registers hold 32 bytes, GCC kept a
// 64-byte sum carried across the taps on the stack and moved it through general registers,
// and the smoothing ran several times slower on Zen 1 (AVX2) than the sampling beside it.

typedef float SMOOTH(vector) __attribute__((vector_size(SMOOTH_VECTOR_BYTES)));
#define SMOOTH_LANES ((fcnn_size)(SMOOTH_VECTOR_BYTES / sizeof(float)))

static inline __attribute__((always_inline)) SMOOTH(vector) SMOOTH(load)(const float *p) {
    SMOOTH(vector) v;
    memcpy(&v, p, sizeof v);
    return v;
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
    // Along rows, then along columns; a pixel's sum starts from the centre tap and adds the
    // pairs of taps t = 1..P, each pair summed first (the kernel is symmetric).
    for (fcnn_size i = 0; i < H; i++) {
        const float *in = padded + i * row + P;
        float *out = across + (i + P) * V;
        for (fcnn_size j = 0; j < V; j += SMOOTH_LANES) {
            SMOOTH(vector) sum = weights[0] * SMOOTH(load)(in + j);
            for (fcnn_size t = 1; t <= P; t++) {
                const SMOOTH(vector) pair = SMOOTH(load)(in + j - t) + SMOOTH(load)(in + j + t);
                sum = sum + weights[t] * pair;
            }
            memcpy(out + j, &sum, sizeof sum);
        }
    }
    // Along columns the rows are contiguous: one flat pass over the H x V sums.
    const float *in = across + P * V;
    for (fcnn_size k = 0; k < H * V; k += SMOOTH_LANES) {
        SMOOTH(vector) sum = weights[0] * SMOOTH(load)(in + k);
        for (fcnn_size t = 1; t <= P; t++) {
            const SMOOTH(vector) pair = SMOOTH(load)(in + k - t * V) + SMOOTH(load)(in + k + t * V);
            sum = sum + weights[t] * pair;
        }
        memcpy(smooth + k, &sum, sizeof sum);
    }
}

#undef SMOOTH_LANES
