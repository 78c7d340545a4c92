// Optimiser kernels: the SGD step with the original project's weight decay, and the
// exponential learning-rate schedule.
#ifndef FCNN_TEMPLATE
#define FCNN_TEMPLATE "optim.c"
#include "template.h"

// ----------------------------------------------------------------------------
// lr = initial_lr * decay^(step / stage_length), floor of the exponent when staircase
double fcnn_exponential_lr(double initial_lr, int64_t step, int64_t stage_length, double decay,
                           int staircase) {
    double exponent = staircase ? (double)(step / stage_length)
                                : (double)step / (double)stage_length;
    return initial_lr * pow(decay, exponent);
}

#else

// ----------------------------------------------------------------------------
// param (N), grad (N) -> param (N) updated in place:
// param <- (1 - weight_decay * lr) * param - lr * grad, the same rule for weights and biases
void S(fcnn_sgd_step)(real *param, const real *grad, real lr, real weight_decay, fcnn_size N) {
    const real keep = 1 - weight_decay * lr;
    for (fcnn_size i = 0; i < N; i++) param[i] = keep * param[i] - lr * grad[i];
}

#endif  // FCNN_TEMPLATE
