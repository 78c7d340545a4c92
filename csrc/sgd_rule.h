// The SGD rule, as an inline template shared by fcnn_sgd_step (optim.c) and the fused
// epoch (epoch.c), which calls it on short panel rows inside its AVX2 clones. Included in
// the template part of those files (real and S defined), once per dtype: no include guard.

// param (N), velocity (N) or NULL, grad (N) -> param and velocity updated in place:
//   velocity <- momentum * velocity + grad                       (when velocity is given)
//   step      = grad, velocity, or grad + momentum * velocity    (plain, momentum, Nesterov)
//   param    <- (1 - weight_decay * lr) * param - lr * step
// The decay stays the original project's multiplicative rule, the same for weights and biases.
static inline void S(sgd_rule)(real *param, real *velocity, const real *grad, real lr,
                               real weight_decay, real momentum, int nesterov, fcnn_size N) {
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
