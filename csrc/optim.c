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

#include "sgd_rule.h"

// ----------------------------------------------------------------------------
// param (N), velocity (N) or NULL, grad (N) -> param and velocity updated in place (sgd_rule.h)
void S(fcnn_sgd_step)(real *param, real *velocity, const real *grad, real lr, real weight_decay,
                      real momentum, int nesterov, fcnn_size N) {
    S(sgd_rule)(param, velocity, grad, lr, weight_decay, momentum, nesterov, N);
}

#endif  // FCNN_TEMPLATE
