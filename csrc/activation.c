// Activation kernels: ReLU, sigmoid, tanh and softmax, forward and backward. The backward
// of sigmoid and tanh reads the forward's output, which is all their derivative needs.
#ifndef FCNN_TEMPLATE
#define FCNN_TEMPLATE "activation.c"
#include "template.h"
#else

// ----------------------------------------------------------------------------
// inp (N) -> out (N)
FCNN_HOT void S(fcnn_relu_forward)(real *out, const real *inp, fcnn_size N) {
    // "< 0" rather than "> 0" so that a NaN passes through and divergence stays visible.
    for (fcnn_size i = 0; i < N; i++) out[i] = inp[i] < 0 ? 0 : inp[i];
}

// dout (N), inp (N) -> dinp (N)
FCNN_HOT void S(fcnn_relu_backward)(real *dinp, const real *dout, const real *inp,
                                    fcnn_size N) {
    for (fcnn_size i = 0; i < N; i++) {
        real gradient = dout[i];  // read whatever inp says: a plain select, which vectorizes
        dinp[i] = inp[i] > 0 ? gradient : 0;
    }
}

// ----------------------------------------------------------------------------
// inp (N) -> out (N) = 1 / (1 + exp(-inp)), from exp(-|inp|) <= 1 so that it never
// overflows: 1 / (1 + e) for inp >= 0, e / (1 + e) below. NaN stays NaN.
void S(fcnn_sigmoid_forward)(real *out, const real *inp, fcnn_size N) {
    for (fcnn_size i = 0; i < N; i++) {
        real x = inp[i];
        real e = EXP(x < 0 ? x : -x);
        out[i] = x < 0 ? e / (1 + e) : 1 / (1 + e);
    }
}

// dout (N), out (N) = sigmoid(inp) -> dinp (N) = dout * out * (1 - out)
FCNN_HOT void S(fcnn_sigmoid_backward)(real *dinp, const real *dout, const real *out,
                                       fcnn_size N) {
    for (fcnn_size i = 0; i < N; i++) dinp[i] = dout[i] * out[i] * (1 - out[i]);
}

// ----------------------------------------------------------------------------
// inp (N) -> out (N) = tanh(inp), which saturates at +-1 without overflowing
void S(fcnn_tanh_forward)(real *out, const real *inp, fcnn_size N) {
    for (fcnn_size i = 0; i < N; i++) out[i] = TANH(inp[i]);
}

// dout (N), out (N) = tanh(inp) -> dinp (N) = dout * (1 - out^2)
FCNN_HOT void S(fcnn_tanh_backward)(real *dinp, const real *dout, const real *out,
                                    fcnn_size N) {
    for (fcnn_size i = 0; i < N; i++) dinp[i] = dout[i] * (1 - out[i] * out[i]);
}

// ----------------------------------------------------------------------------
// logits (B, C) -> probs (B, C), each row from its maximum so exp() cannot overflow
void S(fcnn_softmax_forward)(real *probs, const real *logits, fcnn_size B, fcnn_size C) {
    for (fcnn_size b = 0; b < B; b++) {
        const real *row = logits + b * C;
        real *prob_row = probs + b * C;
        real maxval = row[0];
        for (fcnn_size c = 1; c < C; c++) maxval = row[c] > maxval ? row[c] : maxval;
        real sum = 0;
        for (fcnn_size c = 0; c < C; c++) {
            prob_row[c] = EXP(row[c] - maxval);
            sum += prob_row[c];
        }
        real inv_sum = 1 / sum;
        for (fcnn_size c = 0; c < C; c++) prob_row[c] *= inv_sum;
    }
}

// dout (B, C), probs (B, C) -> dinp (B, C) = probs * (dout - <dout, probs>) per row
void S(fcnn_softmax_backward)(real *dinp, const real *dout, const real *probs, fcnn_size B,
                              fcnn_size C) {
    for (fcnn_size b = 0; b < B; b++) {
        const real *dout_row = dout + b * C;
        const real *prob_row = probs + b * C;
        real *dinp_row = dinp + b * C;
        real dot = 0;
        for (fcnn_size c = 0; c < C; c++) dot += dout_row[c] * prob_row[c];
        for (fcnn_size c = 0; c < C; c++) dinp_row[c] = prob_row[c] * (dout_row[c] - dot);
    }
}

#endif  // FCNN_TEMPLATE
