// Fused softmax + cross-entropy: the mean loss from log-sum-exp, and its gradient.
#ifndef FCNN_TEMPLATE
#define FCNN_TEMPLATE "loss.c"
#include "template.h"
#else

// ----------------------------------------------------------------------------
// logits (B, C), labels (B) in [0, C) -> *loss = mean_b(logsumexp(logits_b) - logits_b[label_b])
void S(fcnn_softmax_cross_entropy_forward)(double *loss, const real *logits,
                                           const int64_t *labels, fcnn_size B, fcnn_size C) {
    // Accumulated in double for both dtypes: the mean of B terms must not drift in float32.
    double total = 0;
    for (fcnn_size b = 0; b < B; b++) {
        const real *row = logits + b * C;
        double maxval = row[0];
        for (fcnn_size c = 1; c < C; c++) maxval = row[c] > maxval ? row[c] : maxval;
        double sum = 0;
        for (fcnn_size c = 0; c < C; c++) sum += exp((double)row[c] - maxval);
        total += maxval + log(sum) - (double)row[labels[b]];
    }
    *loss = total / (double)B;
}

// logits (B, C), labels (B) -> dlogits (B, C) = (softmax(logits) - onehot(labels)) / B
void S(fcnn_softmax_cross_entropy_backward)(real *dlogits, const real *logits,
                                            const int64_t *labels, fcnn_size B, fcnn_size C) {
    S(fcnn_softmax_forward)(dlogits, logits, B, C);
    const real inv_batch = (real)1 / (real)B;
    for (fcnn_size b = 0; b < B; b++) {
        real *row = dlogits + b * C;
        row[labels[b]] -= 1;
        for (fcnn_size c = 0; c < C; c++) row[c] *= inv_batch;
    }
}

#endif  // FCNN_TEMPLATE
