// The C kernels alone, for the sanitizers: every kernel and the fused epoch (with dropout),
// float32 and float64, on buffers malloc'd to their exact sizes (so AddressSanitizer sees
// any read or write past them), then everything freed. Built and run by .ci/sanitize with
// -fsanitize=address,undefined; LeakSanitizer reports any block left allocated at exit.
// Exit status 0 means the kernels ran and produced finite results.
//
// Sizes: B batch, C inputs, OC outputs, N samples; layer sizes in SIZES.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#define B 7
#define C 13
#define OC 5
#define DROPOUT_UNITS (1 << 15)  // above dropout.c's DROPOUT_SPLIT_UNITS
#define N 37
#define L 3
static const fcnn_size SIZES[L + 1] = {20, 16, 9, OC};
// One hidden layer, as the fused epoch runs its output layer inside the first layer's column
// blocks: 70 units, a partial last block in both dtypes.
static const fcnn_size ONE_HIDDEN[L + 1] = {20, 70, OC, 0};

static int failures = 0;

// A buffer of count items of size item, filled with a deterministic pattern in [-1, 1).
static void *filled(size_t count, size_t item, int is_double, unsigned seed) {
    void *buffer = malloc(count * item);
    if (buffer == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < count; i++) {
        seed = seed * 1103515245u + 12345u;
        double value = (double)((seed >> 8) % 2000) / 1000.0 - 1.0;
        if (is_double) {
            ((double *)buffer)[i] = value;
        } else {
            ((float *)buffer)[i] = (float)value;
        }
    }
    return buffer;
}

static void expect_finite(const char *what, double value) {
    if (!isfinite(value)) {
        fprintf(stderr, "%s is not finite: %g\n", what, value);
        failures++;
    }
}

// One function per dtype from one source, like the kernels themselves.
#define DEFINE_RUN(real, S, IS_DOUBLE)                                                         \
    static void S(run)(void) {                                                                 \
        real *x = filled(B * C, sizeof(real), IS_DOUBLE, 1);                                   \
        real *weight = filled(C * OC, sizeof(real), IS_DOUBLE, 2);                             \
        real *bias = filled(OC, sizeof(real), IS_DOUBLE, 3);                                   \
        real *out = malloc(B * OC * sizeof(real));                                             \
        real *dout = filled(B * OC, sizeof(real), IS_DOUBLE, 4);                               \
        real *dx = malloc(B * C * sizeof(real));                                               \
        real *dweight = malloc(C * OC * sizeof(real));                                         \
        real *dbias = malloc(OC * sizeof(real));                                               \
        real *probs = malloc(B * OC * sizeof(real));                                           \
        real *dlogits = malloc(B * OC * sizeof(real));                                         \
        real *velocity = calloc(C * OC, sizeof(real));                                         \
        int64_t labels[B];                                                                     \
        for (int b = 0; b < B; b++) labels[b] = b % OC;                                        \
        S(fcnn_linear_forward)(out, x, weight, bias, B, C, OC, 2);                             \
        S(fcnn_linear_backward)(dx, dweight, dbias, dout, x, weight, B, C, OC, 2);             \
        S(fcnn_linear_backward)(NULL, dweight, dbias, dout, x, weight, B, C, OC, 1);           \
        S(fcnn_relu_forward)(out, out, B * OC);                                                \
        S(fcnn_relu_backward)(dout, dout, out, B * OC);                                        \
        S(fcnn_sigmoid_forward)(probs, out, B * OC);                                           \
        S(fcnn_sigmoid_backward)(dlogits, dout, probs, B * OC);                                \
        S(fcnn_tanh_forward)(probs, out, B * OC);                                              \
        S(fcnn_tanh_backward)(dlogits, dout, probs, B * OC);                                   \
        S(fcnn_softmax_forward)(probs, out, B, OC);                                            \
        S(fcnn_softmax_backward)(dlogits, dout, probs, B, OC);                                 \
        S(fcnn_dropout_forward)(probs, out, B, OC, 0.5, 12345u, 1);                            \
        S(fcnn_dropout_forward)(probs, probs, B, OC, 0.0, 7u, 2); /* in place */               \
        S(fcnn_dropout_backward)(dlogits, dout, B, OC, 0.5, 12345u, 2);                        \
        /* a mask large enough to be split across threads, in place */                         \
        real *units = filled(DROPOUT_UNITS, sizeof(real), IS_DOUBLE, 5);                       \
        S(fcnn_dropout_forward)(units, units, 2, DROPOUT_UNITS / 2, 0.25, 99u, 2);             \
        for (int i = 0; i < DROPOUT_UNITS; i++) expect_finite("dropout", units[i]);            \
        free(units);                                                                           \
        double loss = 0;                                                                       \
        S(fcnn_softmax_cross_entropy_forward)(&loss, out, labels, B, OC);                      \
        expect_finite("cross-entropy", loss);                                                  \
        S(fcnn_softmax_cross_entropy_backward)(dlogits, out, labels, B, OC);                   \
        S(fcnn_sgd_step)(weight, NULL, dweight, (real)0.1, (real)1e-4, (real)0, 0, C * OC);    \
        S(fcnn_sgd_step)(weight, velocity, dweight, (real)0.1, (real)1e-4, (real)0.9, 1,       \
                         C * OC);                                                              \
        for (int i = 0; i < C * OC; i++) expect_finite("weight", weight[i]);                   \
        free(x), free(weight), free(bias), free(out), free(dout), free(dx), free(dweight);     \
        free(dbias), free(probs), free(dlogits), free(velocity);                               \
                                                                                               \
        /* The fused epoch: uint8 images (sparse path) and real images (dense path), with */   \
        /* and without momentum, on 1 and 2 threads, uint8 ones also augmented; with two */    \
        /* hidden layers and with one. */                                                      \
        for (int variant = 0; variant < 32; variant++) {                                       \
            int bytes = variant & 1, with_momentum = (variant >> 1) & 1;                       \
            int threads = 1 + ((variant >> 2) & 1), augmented = bytes && (variant & 8);        \
            if (!bytes && (variant & 8)) continue;                                             \
            const int layers = variant & 16 ? 2 : L;                                           \
            const fcnn_size *sizes = variant & 16 ? ONE_HIDDEN : SIZES;                        \
            real *weights[L], *biases[L], *weight_velocities[L], *bias_velocities[L];          \
            for (int l = 0; l < layers; l++) {                                                 \
                size_t rows = (size_t)sizes[l], cols = (size_t)sizes[l + 1];                   \
                weights[l] = filled(rows * cols, sizeof(real), IS_DOUBLE, 10 + l);             \
                biases[l] = calloc(cols, sizeof(real));                                        \
                weight_velocities[l] = with_momentum ? calloc(rows * cols, sizeof(real)) : 0;  \
                bias_velocities[l] = with_momentum ? calloc(cols, sizeof(real)) : 0;           \
            }                                                                                  \
            size_t pixels = (size_t)N * (size_t)sizes[0];                                      \
            void *images;                                                                      \
            if (bytes) {                                                                       \
                uint8_t *image_bytes = malloc(pixels);                                         \
                for (size_t i = 0; i < pixels; i++) {                                          \
                    image_bytes[i] = (uint8_t)(i % 5 == 0 ? (i * 37) % 256 : 0);               \
                }                                                                              \
                images = image_bytes;                                                          \
            } else {                                                                           \
                images = filled(pixels, sizeof(real), IS_DOUBLE, 20);                          \
            }                                                                                  \
            int64_t sample_labels[N], order[N];                                                \
            for (int n = 0; n < N; n++) sample_labels[n] = (n * 3) % OC, order[n] = (n * 11) % N; \
            fcnn_size batches = (N + B - 1) / B;                                               \
            double *lrs = malloc((size_t)batches * sizeof(double));                            \
            for (fcnn_size s = 0; s < batches; s++) lrs[s] = 0.05;                             \
            fcnn_mlp net = {.num_layers = layers};                                             \
            for (int l = 0; l <= layers; l++) net.sizes[l] = sizes[l];                         \
            for (int l = 0; l < layers; l++) {                                                 \
                net.weights[l] = weights[l], net.biases[l] = biases[l];                        \
                net.weight_velocities[l] = weight_velocities[l];                               \
                net.bias_velocities[l] = bias_velocities[l];                                   \
            }                                                                                  \
            /* dropout after the first hidden ReLU in half the variants, the second in all */  \
            net.dropout_rates[0] = variant & 1 ? 0.5 : 0.0;                                    \
            net.dropout_rates[1] = layers > 2 ? 0.25 : 0.0;                                    \
            net.dropout_seeds[1] = UINT64_MAX, net.dropout_steps[1] = 1000;                    \
            fcnn_epoch_augment augment = {EPOCH_AUGMENT_SETTINGS, 7, 100, 4, 5};               \
            fcnn_epoch_data data = {images, bytes, sample_labels, order, N, B,                 \
                                    augmented ? &augment : NULL};                              \
            fcnn_sgd_settings sgd = {lrs, 1e-4, with_momentum ? 0.9 : 0.0, 1};                 \
            void *workspace = malloc((size_t)fcnn_train_epoch_workspace(                       \
                &net, B, sizeof(real), threads, data.augment));                                \
            double loss_sum = 0;                                                               \
            int64_t correct = 0;                                                               \
            /* sparse_threshold -1: the cost model, calibrated at the first call. */           \
            fcnn_size steps = S(fcnn_train_epoch)(&loss_sum, &correct, &net, workspace, &data, \
                                                  &sgd, variant & 2 ? -1.0 : 0.65, threads);   \
            if (steps != batches) {                                                            \
                fprintf(stderr, "train_epoch did %td of %td steps\n", steps, batches);         \
                failures++;                                                                    \
            }                                                                                  \
            expect_finite("epoch loss", loss_sum);                                             \
            for (int l = 0; l < layers; l++) {                                                 \
                free(weights[l]), free(biases[l]);                                             \
                free(weight_velocities[l]), free(bias_velocities[l]);                          \
            }                                                                                  \
            free(images), free(lrs), free(workspace);                                          \
        }                                                                                      \
    }

// The warp of the augmented epochs: every transform on, images (N, 4, 5) = SIZES[0] pixels.
#define EPOCH_AUGMENT_SETTINGS {1.5, 20.0, 0.2, 0.3, 3.0, 1.5}

// fcnn_augment alone, on 1 and 2 threads, with and without the elastic part's workspace, its
// fields on pixels (sigma 1.5) and on cells of 2 x 2 pixels (sigma 4 and 50).
static void run_augment(void) {
    enum { HEIGHT = 6, WIDTH = 9, IMAGES = 5, WARPED = 7, SETTINGS = 4 };
    uint8_t *images = malloc(IMAGES * HEIGHT * WIDTH), *out = malloc(WARPED * HEIGHT * WIDTH);
    for (int i = 0; i < IMAGES * HEIGHT * WIDTH; i++) images[i] = (uint8_t)(i * 37 % 256);
    int64_t indices[WARPED] = {4, 0, 3, 3, 1, 2, 0};
    const fcnn_augment_settings settings[SETTINGS] = {
        {2.0, 30.0, 0.3, 0.4, 0.0, 0.0}, EPOCH_AUGMENT_SETTINGS, {0.0, 0.0, 0.0, 0.0, 5.0, 50.0},
        {1.0, 5.0, 0.1, 0.1, 8.0, 4.0}};
    for (int threads = 1; threads <= 2; threads++) {
        for (int i = 0; i < SETTINGS; i++) {
            fcnn_size bytes = fcnn_augment_workspace(HEIGHT, WIDTH, &settings[i], threads);
            void *workspace = bytes > 0 ? malloc((size_t)bytes) : NULL;
            fcnn_augment(out, workspace, images, indices, WARPED, HEIGHT, WIDTH, &settings[i], 3,
                         10, threads);
            free(workspace);
        }
    }
    free(images), free(out);
}

DEFINE_RUN(float, FCNN_SUFFIX_F32, 0)
DEFINE_RUN(double, FCNN_SUFFIX_F64, 1)

int main(void) {
    run_f32();
    run_f64();
    run_augment();
    expect_finite("exponential_lr", fcnn_exponential_lr(0.1, 1000, 10, 0.5, 1));
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("sanitize driver: every kernel ran, no failure\n");
    return 0;
}
