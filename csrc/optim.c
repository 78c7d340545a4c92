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
// param (N), velocity (N) or NULL, grad (N) -> param and velocity updated in place:
//   velocity <- momentum * velocity + grad                       (when velocity is given)
//   step      = grad, velocity, or grad + momentum * velocity    (plain, momentum, Nesterov)
//   param    <- (1 - weight_decay * lr) * param - lr * step
// The decay stays the original project's multiplicative rule, the same for weights and biases.
void S(fcnn_sgd_step)(real *param, real *velocity, const real *grad, real lr, real weight_decay,
                      real momentum, int nesterov, fcnn_size N) {
    const real keep = 1 - weight_decay * lr;
    if (velocity == NULL) {
        for (fcnn_size i = 0; i < N; i++) param[i] = keep * param[i] - lr * grad[i];
        return;
    }
    for (fcnn_size i = 0; i < N; i++) {
        real v = momentum * velocity[i] + grad[i];
        velocity[i] = v;
        real step = nesterov ? grad[i] + momentum * v : v;
        param[i] = keep * param[i] - lr * step;
    }
}

#endif  // FCNN_TEMPLATE
