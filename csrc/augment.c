// Data augmentation on the fly: each uint8 image warped by a random affine map (translation,
// rotation, scale, shear about the image centre) and an elastic distortion (Simard, Steinkraus
// and Platt, ICDAR 2003), sampled bilinearly. Image b of a call draws its numbers from the
// counter-based stream fcnn_random_key(seed, first_stream + b) (random.h), so its result
// depends on (seed, stream) only: not on the batch it is in, the thread or the thread count.
//
// Bitwise twin: fcnn/reference.py's augment gives the same bytes. Everything is computed in
// double, in the twin's order, without contraction into fused multiply-adds (hence the pragmas,
// which hold in the AVX-512 and AVX2 clones too: vectorising across pixels changes no pixel's
// arithmetic) and with subnormals kept (FTZ/DAZ off in the loop, as NumPy has them); sin, cos
// and exp come from the libm Python's math module calls too.
//
// Size legend: B = images warped, N = images given, H x W = pixels of an image (C = H * W),
// P = radius of the smoothing kernel actually applied (see augment_radius).
#pragma GCC optimize("fp-contract=off")
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "random.h"
#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#define AUGMENT_HAVE_MXCSR 1
#endif

// Draws of an image's stream: the five affine numbers at fixed indices, whether or not their
// transform is on (turning one off does not change the others), then the displacement fields
// dx (C numbers) and dy (C numbers) from ELASTIC_FIRST on.
enum { DRAW_TRANSLATE_X, DRAW_TRANSLATE_Y, DRAW_ROTATE, DRAW_SCALE, DRAW_SHEAR };
#define ELASTIC_FIRST 8

// ----------------------------------------------------------------------------
// the smoothing kernel and the workspace

static int elastic_on(const fcnn_augment_settings *settings) {
    return settings->elastic_alpha > 0 && settings->elastic_sigma > 0;
}

// Radius the Gaussian is truncated at, ceil(3 sigma), and the part of it that can reach a pixel
// of the image: taps beyond max(H, W) - 1 only ever meet the zeros outside.
static fcnn_size augment_radius(fcnn_size *applied, fcnn_size H, fcnn_size W,
                                const fcnn_augment_settings *settings) {
    fcnn_size radius = elastic_on(settings) ? (fcnn_size)ceil(3 * settings->elastic_sigma) : 0;
    fcnn_size reach = (H > W ? H : W) - 1;
    *applied = radius < reach ? radius : reach;
    return radius;
}

// weights (P + 1): the normalised Gaussian of std sigma truncated at radius, taps 0..P
static void gaussian_taps(double *weights, fcnn_size P, fcnn_size radius, double sigma) {
    double total = 1;
    for (fcnn_size t = 1; t <= radius; t++) {
        total += 2 * exp(-(double)(t * t) / (2 * sigma * sigma));
    }
    weights[0] = 1 / total;
    for (fcnn_size t = 1; t <= P; t++) {
        weights[t] = exp(-(double)(t * t) / (2 * sigma * sigma)) / total;
    }
}

// Doubles of one thread's scratch: a row's source coordinates (2W); with the elastic part, per
// field, the smoothed field H x W, the row-padded field H x (W + 2P) and the column-padded
// horizontal pass (H + 2P) x W. (Sizes checked for overflow by fcnn_augment_workspace.)
static fcnn_size scratch_doubles(fcnn_size H, fcnn_size W, fcnn_size P, int elastic) {
    return 2 * W + (elastic ? 2 * (H * W + H * (W + 2 * P) + (H + 2 * P) * W) : 0);
}

fcnn_size fcnn_augment_workspace(fcnn_size H, fcnn_size W, const fcnn_augment_settings *settings,
                                 int num_threads) {
    fcnn_size P;
    augment_radius(&P, H, W, settings);
    const int elastic = elastic_on(settings);
    // with the elastic part, shared: the taps (P + 1 doubles) and the index hashes (2C); then
    // each thread's scratch
    fcnn_size padded_h, padded_w, a, b, c, per_thread = 0, all, shared = 0, total;
    if (elastic &&
        (__builtin_add_overflow(H, 2 * P, &padded_h) ||
         __builtin_add_overflow(W, 2 * P, &padded_w) ||
         __builtin_mul_overflow(H, padded_w, &a) || __builtin_mul_overflow(padded_h, W, &b) ||
         __builtin_mul_overflow(H, W, &c) || __builtin_add_overflow(a, b, &per_thread) ||
         __builtin_add_overflow(per_thread, c, &per_thread) ||
         __builtin_mul_overflow(per_thread, 2, &per_thread) ||
         __builtin_mul_overflow(c, 2 * (fcnn_size)sizeof(uint64_t), &shared) ||
         __builtin_add_overflow(shared, (P + 1) * (fcnn_size)sizeof(double), &shared))) {
        return -1;
    }
    if (__builtin_add_overflow(per_thread, 2 * W, &per_thread) ||
        __builtin_mul_overflow(per_thread, (fcnn_size)sizeof(double), &per_thread) ||
        __builtin_mul_overflow(per_thread, (fcnn_size)num_threads, &all) ||
        __builtin_add_overflow(all, shared, &total) || total > PTRDIFF_MAX / 2) {
        return -1;
    }
    return total;
}

// ----------------------------------------------------------------------------
// one image

// field (H, W) <- 2 u - 1 for the C draws of key whose index hashes are hashes (C), written
// into the interior of padded (H, W + 2P), whose margins are zero; then smoothed separably
// into smooth (H, W).
FCNN_HOT static void smooth_field(double *smooth, double *padded, double *across, const double *weights,
                         uint64_t key, const uint64_t *hashes, fcnn_size H, fcnn_size W,
                         fcnn_size P) {
    const fcnn_size row = W + 2 * P;
    // The draws in one flat loop over the C pixels (it vectorises: 64-bit multiplies and
    // conversions in AVX-512), staged in smooth, then into the padded rows.
    for (fcnn_size k = 0; k < H * W; k++) {
        smooth[k] = 2 * fcnn_random_uniform_hashed(key, hashes[k]) - 1;
    }
    for (fcnn_size i = 0; i < H; i++) {
        memcpy(padded + i * row + P, smooth + i * W, (size_t)W * sizeof(double));
    }
    // along rows: across (H + 2P, W), rows P..P+H-1; the taps' pairs summed first (symmetry)
    for (fcnn_size i = 0; i < H; i++) {
        const double *in = padded + i * row + P;
        double *out = across + (i + P) * W;
        for (fcnn_size j = 0; j < W; j++) out[j] = weights[0] * in[j];
        for (fcnn_size t = 1; t <= P; t++) {
            for (fcnn_size j = 0; j < W; j++) {
                out[j] = out[j] + weights[t] * (in[j - t] + in[j + t]);
            }
        }
    }
    // along columns
    for (fcnn_size i = 0; i < H; i++) {
        const double *in = across + (i + P) * W;
        double *out = smooth + i * W;
        for (fcnn_size j = 0; j < W; j++) out[j] = weights[0] * in[j];
        for (fcnn_size t = 1; t <= P; t++) {
            const double *above = in - t * W, *below = in + t * W;
            for (fcnn_size j = 0; j < W; j++) out[j] = out[j] + weights[t] * (above[j] + below[j]);
        }
    }
}

// The pixel (i, j) of image (H, W), 0 outside it.
static double pixel_at(const uint8_t *image, fcnn_size i, fcnn_size j, fcnn_size H, fcnn_size W) {
    return i >= 0 && i < H && j >= 0 && j < W ? (double)image[i * W + j] : 0.0;
}

// image (H, W) -> out (H, W) warped by the draws of key; scratch: scratch_doubles(H, W, P, elastic);
// hashes (2C): fcnn_random_index_hash of the elastic fields' draw indices
FCNN_HOT static void augment_image(uint8_t *out, double *scratch, const uint8_t *image,
                          const double *weights, const uint64_t *hashes,
                          const fcnn_augment_settings *settings, uint64_t key, fcnn_size H,
                          fcnn_size W, fcnn_size P) {
    // The sampling map, output -> source, is the inverse of the digit's motion: moved by
    // (tx, ty), rotated by theta, scaled by s and sheared by k (x += k y), about the centre.
    const double tx = settings->translate * (2 * fcnn_random_uniform(key, DRAW_TRANSLATE_X) - 1);
    const double ty = settings->translate * (2 * fcnn_random_uniform(key, DRAW_TRANSLATE_Y) - 1);
    const double theta =
        settings->rotate * (2 * fcnn_random_uniform(key, DRAW_ROTATE) - 1) * (M_PI / 180);
    const double s = 1 + settings->scale * (2 * fcnn_random_uniform(key, DRAW_SCALE) - 1);
    const double k = settings->shear * (2 * fcnn_random_uniform(key, DRAW_SHEAR) - 1);
    const double cosine = cos(theta), sine = sin(theta);
    // (1/s) [[1, -k], [0, 1]] [[cos, sin], [-sin, cos]]
    const double a00 = (cosine + k * sine) / s, a01 = (sine - k * cosine) / s;
    const double a10 = -sine / s, a11 = cosine / s;
    const double cx = (double)(W - 1) / 2, cy = (double)(H - 1) / 2;
    const int elastic = elastic_on(settings);
    const double alpha = settings->elastic_alpha;
    double *source_x = scratch, *source_y = scratch + W;
    double *smooth_x = source_y + W, *smooth_y = smooth_x + H * W;
    if (elastic) {
        double *padded = smooth_y + H * W, *across = padded + H * (W + 2 * P);
        smooth_field(smooth_x, padded, across, weights, key, hashes, H, W, P);
        smooth_field(smooth_y, padded + H * (W + 2 * P) + (H + 2 * P) * W,
                     across + H * (W + 2 * P) + (H + 2 * P) * W, weights, key, hashes + H * W,
                     H, W, P);
    }
    // Source coordinates of a row first, in a loop of its own that vectorises (the same
    // arithmetic per pixel, so the same bits), then the sampling, which branches.
    for (fcnn_size i = 0; i < H; i++) {
        const double ry = (double)i - cy - ty;
        for (fcnn_size j = 0; j < W; j++) {
            const double rx = (double)j - cx - tx;
            source_x[j] = cx + (a00 * rx + a01 * ry);
            source_y[j] = cy + (a10 * rx + a11 * ry);
        }
        if (elastic) {
            for (fcnn_size j = 0; j < W; j++) {
                source_x[j] = source_x[j] + alpha * smooth_x[i * W + j];
                source_y[j] = source_y[j] + alpha * smooth_y[i * W + j];
            }
        }
        for (fcnn_size j = 0; j < W; j++) {
            const double xs = source_x[j], ys = source_y[j];
            uint8_t value = 0;
            // Beyond one pixel outside, all four neighbours are zeros (NaN fails too).
            if (xs > -1 && xs < (double)W && ys > -1 && ys < (double)H) {
                const double x0 = floor(xs), y0 = floor(ys), fx = xs - x0, fy = ys - y0;
                const fcnn_size ix = (fcnn_size)x0, iy = (fcnn_size)y0;
                double p00, p01, p10, p11;
                if (ix >= 0 && iy >= 0 && ix + 1 < W && iy + 1 < H) {
                    const uint8_t *corner = image + iy * W + ix;
                    p00 = corner[0], p01 = corner[1], p10 = corner[W], p11 = corner[W + 1];
                } else {
                    p00 = pixel_at(image, iy, ix, H, W), p01 = pixel_at(image, iy, ix + 1, H, W);
                    p10 = pixel_at(image, iy + 1, ix, H, W);
                    p11 = pixel_at(image, iy + 1, ix + 1, H, W);
                }
                // Four zeros give floor(0 + 0.5) = 0: the background costs no arithmetic.
                if (p00 != 0 || p01 != 0 || p10 != 0 || p11 != 0) {
                    const double top = (1 - fx) * p00 + fx * p01;
                    const double bottom = (1 - fx) * p10 + fx * p11;
                    const double rounded = floor((1 - fy) * top + fy * bottom + 0.5);
                    value = rounded <= 0 ? 0 : rounded >= 255 ? 255 : (uint8_t)rounded;
                }
            }
            out[i * W + j] = value;
        }
    }
}

// ----------------------------------------------------------------------------
// a batch

// images (N, H, W) uint8, indices (B) -> out (B, H, W): image indices[b] warped with the
// stream first_stream + b of seed; workspace of fcnn_augment_workspace(H, W, settings,
// num_threads) bytes (NULL when that is 0).
void fcnn_augment(uint8_t *out, void *workspace, const uint8_t *images, const int64_t *indices,
                  fcnn_size B, fcnn_size H, fcnn_size W, const fcnn_augment_settings *settings,
                  uint64_t seed, int64_t first_stream, int num_threads) {
    const fcnn_size C = H * W;
    fcnn_size P;
    const fcnn_size radius = augment_radius(&P, H, W, settings);
    const int elastic = elastic_on(settings);
    double *weights = elastic ? workspace : NULL;
    uint64_t *hashes = elastic ? (uint64_t *)(weights + (P + 1)) : NULL;
    double *scratches = elastic ? (double *)(hashes + 2 * C) : workspace;
    const fcnn_size per_thread = scratch_doubles(H, W, P, elastic);
    if (elastic) {
        gaussian_taps(weights, P, radius, settings->elastic_sigma);
        // Every image draws its fields at the same indices: their hashes serve all streams.
        for (fcnn_size k = 0; k < 2 * C; k++) {
            hashes[k] = fcnn_random_index_hash(ELASTIC_FIRST + (uint64_t)k);
        }
    }
    const int identity = settings->translate == 0 && settings->rotate == 0 &&
                         settings->scale == 0 && settings->shear == 0 && !elastic;
#pragma omp parallel num_threads(num_threads)
    {
#ifdef AUGMENT_HAVE_MXCSR
        // NumPy keeps subnormals: so does the warp, whatever mode the caller runs in.
        const unsigned saved_mode = _mm_getcsr();
        _mm_setcsr(saved_mode & ~0x8040u);
#endif
        double *scratch = identity ? NULL : scratches + fcnn_thread_index() * per_thread;
        if (scratch != NULL) memset(scratch, 0, (size_t)per_thread * sizeof(double));
#pragma omp for schedule(static)
        for (fcnn_size b = 0; b < B; b++) {
            const uint8_t *image = images + indices[b] * C;
            if (identity) {
                memcpy(out + b * C, image, (size_t)C);
            } else {
                uint64_t key = fcnn_random_key(seed, (uint64_t)first_stream + (uint64_t)b);
                augment_image(out + b * C, scratch, image, weights, hashes, settings, key, H, W,
                              P);
            }
        }
#ifdef AUGMENT_HAVE_MXCSR
        _mm_setcsr(saved_mode);
#endif
    }
}
