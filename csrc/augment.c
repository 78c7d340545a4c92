// Data augmentation on the fly: each uint8 image warped by a random affine map (translation,
// rotation, scale, shear about the image centre) and an elastic distortion (Simard, Steinkraus
// and Platt, ICDAR 2003), sampled bilinearly. Image b of a call draws its numbers from the
// counter-based stream fcnn_random_key(seed, first_stream + b) (random.h), so its result
// depends on (seed, stream) only: not on the batch it is in, the thread or the thread count.
//
// Bitwise twin: fcnn/reference.py's augment gives the same bytes. The affine map's numbers are
// drawn and composed in double, then rounded to float; the displacement fields (24 random bits
// a number, both drawn from one 64-bit number), the source coordinates and the bilinear
// sampling are float, which holds a coordinate to 2^-24 of its size (1/4000 of a pixel up to
// 4096 pixels across) and a sampled value to well under the 1/2 that rounding to a byte
// discards, at half the vector work of double; all in the twin's order, without contraction
// into fused multiply-adds (hence the pragmas, which hold in the AVX-512 and AVX2 clones too:
// vectorising across pixels changes no pixel's arithmetic; no-trapping-math only lets GCC
// compute both sides of the sampling's selects, so that it vectorises), with subnormals kept
// (FTZ/DAZ off in the loop, as NumPy has them), and with the sin, cos and exp of the libm that
// Python's math module calls too.
//
// The elastic fields live on a grid of cells (field_grid_of): the pixels themselves, or with
// sigma >= COARSE_SIGMA cells of 2 x 2 pixels. There a field is drawn and smoothed at a quarter
// of the points, by a Gaussian of std sigma / 2 cells, and blended bilinearly to the pixels: a
// field that smooth changes by little between cell centres, and the elastic part of the warp
// takes four times fewer draws and an eighth of the smoothing's adds (tests/test_augment.py
// checks that its spread and its gradients stay near those of the field smoothed at every
// pixel).
//
// Size legend: B = images warped, N = images given, H x W = pixels of an image (C = H * W),
// Hc x Wc = cells of the fields' grid (Cc = Hc * Wc), P = radius of the smoothing kernel
// actually applied, in cells (see field_grid_of), V = Wc rounded up to a whole number of LANES
// (the row stride of the smoothed fields, so that every pass over them runs on whole
// vectors).
#pragma GCC optimize("fp-contract=off", "no-trapping-math")
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
#include <limits.h>
#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels.h"
#include "random.h"
#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#define AUGMENT_HAVE_MXCSR 1
#endif

// Draws of an image's stream: the five affine numbers at fixed indices, whether or not their
// transform is on (turning one off does not change the others), then from ELASTIC_FIRST on one
// number per cell of the fields' grid, whose bits 40-63 give the field dx there and bits 16-39
// the field dy.
enum { DRAW_TRANSLATE_X, DRAW_TRANSLATE_Y, DRAW_ROTATE, DRAW_SCALE, DRAW_SHEAR };
#define ELASTIC_FIRST 8

// Floats per unit of the fields' row stride: a cache line, and whole vectors of either width
// that the smoothing uses (smooth_field.h).
#define LANES ((fcnn_size)16)

// A cache line, in doubles, and the first line boundary at or after p
#define LINE_DOUBLES 8
static inline float *align_to_line(void *p) {
    return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

// W rounded up to whole vectors (fcnn_augment_workspace refuses W > PTRDIFF_MAX / 4)
static fcnn_size round_to_lanes(fcnn_size W) { return (W + LANES - 1) / LANES * LANES; }

// ----------------------------------------------------------------------------
// the fields' grid, the smoothing kernel and the workspace

// The smallest elastic_sigma whose fields are drawn on cells of 2 x 2 pixels: the smoothing's
// std is then at least 2 cells, and the blended field's spread and gradients stay within 2%
// and 6% of the field smoothed at every pixel (at sigma 2, its gradients fell by a sixth).
#define COARSE_SIGMA 4.0

static int elastic_on(const fcnn_augment_settings *settings) {
    return settings->elastic_alpha > 0 && settings->elastic_sigma > 0;
}

// The grid the elastic fields are drawn and smoothed on
typedef struct {
    fcnn_size step;    // pixels a cell spans along each axis: 1, or 2 from COARSE_SIGMA on
    fcnn_size Hc, Wc;  // cells: ceil(H / step) x ceil(W / step)
    fcnn_size radius;  // cells the Gaussian is truncated at, ceil(3 sigma / step)
    fcnn_size P;       // the part of radius that can reach a cell: taps beyond max(Hc, Wc) - 1
                       // only ever meet the zeros outside
} field_grid;

static field_grid field_grid_of(fcnn_size H, fcnn_size W, const fcnn_augment_settings *settings) {
    field_grid grid = {1, H, W, 0, 0};
    if (elastic_on(settings)) {
        grid.step = settings->elastic_sigma >= COARSE_SIGMA ? 2 : 1;
        grid.Hc = (H + grid.step - 1) / grid.step;
        grid.Wc = (W + grid.step - 1) / grid.step;
        grid.radius = (fcnn_size)ceil(3 * settings->elastic_sigma / (double)grid.step);
        const fcnn_size reach = (grid.Hc > grid.Wc ? grid.Hc : grid.Wc) - 1;
        grid.P = grid.radius < reach ? grid.radius : reach;
    }
    return grid;
}

// weights (P + 1): the normalised Gaussian of std sigma truncated at radius, taps 0..P,
// computed in double and rounded to float
static void gaussian_taps(float *weights, fcnn_size P, fcnn_size radius, double sigma) {
    double total = 1;
    for (fcnn_size t = 1; t <= radius; t++) {
        total += 2 * exp(-(double)(t * t) / (2 * sigma * sigma));
    }
    weights[0] = (float)(1 / total);
    for (fcnn_size t = 1; t <= P; t++) {
        weights[t] = (float)(exp(-(double)(t * t) / (2 * sigma * sigma)) / total);
    }
}

// The bilinear blend from cells to the n pixels along an axis of m cells: pixel i lies at
// u = (i - (step - 1) / 2) / step in cell units (cell c's centre at u = c) and takes
// (1 - weight) times cell first plus weight times cell second, the cells that bracket u; at
// the grid's ends, the end cell (weight 0). With step 1, every pixel is its own cell.
typedef struct {
    int32_t *first, *second;  // (n each): cells
    float *weight;            // (n): the second cell's weight, in [0, 1)
} cell_blend;

static void blend_table(cell_blend table, fcnn_size n, fcnn_size m, fcnn_size step) {
    for (fcnn_size i = 0; i < n; i++) {
        const double u = ((double)i - (double)(step - 1) / 2) / (double)step;
        const double low = floor(u) < 0 ? 0 : floor(u) > (double)(m - 1) ? (double)(m - 1)
                                                                            : floor(u);
        const int inner = low + 1 < (double)m && u > low;
        table.first[i] = (int32_t)low;
        table.second[i] = (int32_t)low + inner;
        table.weight[i] = inner ? (float)(u - low) : 0.0f;
    }
}

// Floats of the two displacement fields' buffers (an even number), per field the smoothed
// field Hc x V, the row-padded field Hc x (V + 2P), the column-padded horizontal pass
// (Hc + 2P) x V and the field blended to the pixels along rows, Hc x W; 0 when that does not
// fit in a fcnn_size.
static fcnn_size field_floats(field_grid grid, fcnn_size W) {
    const fcnn_size V = round_to_lanes(grid.Wc), Hc = grid.Hc, P = grid.P;
    fcnn_size floats = 0, product;
#define ADD_PRODUCT(a, b) \
    (__builtin_mul_overflow((a), (b), &product) || __builtin_add_overflow(floats, product, &floats))
    if (ADD_PRODUCT(2 * Hc, V) || ADD_PRODUCT(2 * Hc, V + 2 * P) ||
        ADD_PRODUCT(2 * (Hc + 2 * P), V) || ADD_PRODUCT(2 * Hc, W)) {
        return 0;
    }
#undef ADD_PRODUCT
    return floats;
}

// Doubles the taps (P + 1 floats) take in the workspace
static fcnn_size taps_doubles(fcnn_size P) { return (P + 2) / 2; }

// Doubles the blend tables of the rows (H) and the columns (W) take: three 4-byte numbers each
static fcnn_size blend_doubles(fcnn_size H, fcnn_size W) { return (3 * (H + W) + 1) / 2; }

// Doubles of the part all threads share, with the elastic part: the cells' index hashes (one
// each), the taps, then the blend tables. fcnn_augment_workspace sizes it, layout_of carves it.
static fcnn_size shared_doubles(fcnn_size H, fcnn_size W, field_grid grid) {
    return grid.Hc * grid.Wc + taps_doubles(grid.P) + blend_doubles(H, W);
}

// Bytes of the image with a border of zeros, (H + 2) x (W + 2) and one more (see pack_quads)
static fcnn_size bordered_bytes(fcnn_size H, fcnn_size W) { return (H + 2) * (W + 2) + 1; }

// Doubles of one thread's scratch: the source coordinates and sampled values (3C floats), the
// quads (H + 1) x (W + 2) (4 bytes each), the bordered image (bordered_bytes), then with the
// elastic part the fields' floats from the next 64-byte boundary. (Sizes checked for overflow
// by fcnn_augment_workspace.)
static fcnn_size scratch_doubles(fcnn_size H, fcnn_size W, field_grid grid, int elastic) {
    const fcnn_size fields = elastic ? field_floats(grid, W) / 2 + LINE_DOUBLES : 0;
    return (3 * H * W + (H + 1) * (W + 2) + 1) / 2 + (bordered_bytes(H, W) + 7) / 8 + fields;
}

fcnn_size fcnn_augment_workspace(fcnn_size H, fcnn_size W, const fcnn_augment_settings *settings,
                                 int num_threads) {
    const int elastic = elastic_on(settings);
    // Every term of scratch_doubles bounded first (the sampling's indices into the quads are
    // int), then the shared part (shared_doubles) and each thread's scratch.
    fcnn_size C, bordered, floats = 0, per_thread, total;
    if (H > PTRDIFF_MAX / 4 || W > PTRDIFF_MAX / 4 || __builtin_mul_overflow(H, W, &C) ||
        __builtin_mul_overflow(H + 2, W + 2, &bordered) || C > (INT_MAX - bordered) / 4) {
        return -1;
    }
    const field_grid grid = field_grid_of(H, W, settings);
    if (elastic && ((floats = field_floats(grid, W)) == 0 || floats > PTRDIFF_MAX / 2)) {
        return -1;
    }
    const fcnn_size shared = elastic ? shared_doubles(H, W, grid) * (fcnn_size)sizeof(double) : 0;
    if (__builtin_mul_overflow(scratch_doubles(H, W, grid, elastic),
                               (fcnn_size)sizeof(double) * num_threads, &per_thread) ||
        __builtin_add_overflow(per_thread, shared, &total) || total > PTRDIFF_MAX / 2) {
        return -1;
    }
    return total;
}

// ----------------------------------------------------------------------------
// one image

// hashes (n) <- fcnn_random_index_hash of the indices first, first + 1, ...: every image draws
// its fields at the same indices, so their hashes serve all streams
FCNN_HOT static void index_hashes(uint64_t *hashes, uint64_t first, fcnn_size n) {
    for (fcnn_size k = 0; k < n; k++) hashes[k] = fcnn_random_index_hash(first + (uint64_t)k);
}

// field_x, field_y (Cc each) <- 2 u - 1 for the draws of key whose index hashes are hashes
// (Cc): u the number's bits 40-63 (dx) or 16-39 (dy), times 2^-24, all exact in float
FCNN_HOT static void draw_fields(float *restrict field_x, float *restrict field_y, uint64_t key,
                                 const uint64_t *restrict hashes, fcnn_size Cc) {
    for (fcnn_size k = 0; k < Cc; k++) {
        const uint64_t bits = fcnn_random_bits_hashed(key, hashes[k]);
        field_x[k] = 2 * ((float)(uint32_t)(bits >> 40) * 0x1.0p-24f) - 1;
        field_y[k] = 2 * ((float)(uint32_t)((bits >> 16) & 0xFFFFFF) * 0x1.0p-24f) - 1;
    }
}

// The smoothing in 64-byte vectors (AVX-512), 32-byte ones (AVX2) and 16-byte ones (CPUs
// without; smooth_field.h); the width is picked at run time (fcnn_vector_bytes), since one
// width compiled for every clone was slow in the others.
#define SMOOTH(name) name##_wide
#define SMOOTH_TARGETS FCNN_HOT
#define SMOOTH_VECTOR_BYTES 64
#include "smooth_field.h"
#undef SMOOTH
#undef SMOOTH_TARGETS
#undef SMOOTH_VECTOR_BYTES
#define SMOOTH(name) name##_narrow
#define SMOOTH_TARGETS FCNN_HOT_AVX2
#define SMOOTH_VECTOR_BYTES 32
#include "smooth_field.h"
#undef SMOOTH
#undef SMOOTH_TARGETS
#undef SMOOTH_VECTOR_BYTES
#define SMOOTH(name) name##_plain
#define SMOOTH_TARGETS
#define SMOOTH_VECTOR_BYTES 16
#include "smooth_field.h"
#undef SMOOTH
#undef SMOOTH_TARGETS
#undef SMOOTH_VECTOR_BYTES

static void smooth_field(float *smooth, float *padded, float *across, const float *weights,
                         fcnn_size H, fcnn_size W, fcnn_size P) {
    const int bytes = fcnn_vector_bytes();
    (bytes == 64   ? smooth_field_wide
     : bytes == 32 ? smooth_field_narrow
                   : smooth_field_plain)(smooth, padded, across, weights, H, W, P);
}

// wide (Hc x W) <- each row of smooth (Hc x V) blended to the W pixels of a row by the table
// columns (see cell_blend)
FCNN_HOT static void widen_field(float *restrict wide, const float *restrict smooth,
                                 cell_blend columns, fcnn_size Hc, fcnn_size V, fcnn_size W) {
    for (fcnn_size r = 0; r < Hc; r++) {
        const float *cells = smooth + r * V;
        float *row = wide + r * W;
        for (fcnn_size j = 0; j < W; j++) {
            const float weight = columns.weight[j];
            row[j] = (1 - weight) * cells[columns.first[j]] + weight * cells[columns.second[j]];
        }
    }
}

// values (C) <- the image sampled bilinearly at (source_x, source_y) (C each), rounded half up
// and clamped to [0, 255]; 0 where a point is not within one pixel of the image or is NaN.
// quads ((H + 1) x (W + 2)): at (r, c), the four pixels (r - 1, c - 1), (r - 1, c), (r, c - 1)
// and (r, c) of the image, zeros outside, one byte each, so that a point loads its four
// neighbours at once (the load is a gather: one instead of four). One flat loop without
// branches, so that it vectorises: a background pixel costs what a digit's does, and four
// zeros give floor(0 + 0.5) = 0 as the twin's formula does. Its results are floats: a uint8
// store would make GCC vectorise 64 pixels at a time, more than a row. Indices are int
// (vectorised conversions in AVX2 too): fcnn_augment_workspace refuses scratch of more than
// INT_MAX doubles.
FCNN_HOT static void sample_image(float *restrict values, const uint32_t *restrict quads,
                                  const float *restrict source_x, const float *restrict source_y,
                                  fcnn_size H, fcnn_size W) {
    const int row = (int)W + 2;
    const float width = (float)W, height = (float)H;
    for (fcnn_size k = 0; k < H * W; k++) {
        const float xs = source_x[k], ys = source_y[k];
        const int inside = (xs > -1) & (xs < width) & (ys > -1) & (ys < height);
        const float x = inside ? xs : 0, y = inside ? ys : 0;
        const float x0 = floorf(x), y0 = floorf(y), fx = x - x0, fy = y - y0;
        const uint32_t quad = quads[((int)y0 + 1) * row + (int)x0 + 1];
        const float p00 = (float)(int)(quad & 255), p01 = (float)(int)(quad >> 8 & 255);
        const float p10 = (float)(int)(quad >> 16 & 255), p11 = (float)(int)(quad >> 24);
        const float top = (1 - fx) * p00 + fx * p01;
        const float bottom = (1 - fx) * p10 + fx * p11;
        const float rounded = floorf((1 - fy) * top + fy * bottom + 0.5f);
        const float low = rounded > 0 ? rounded : 0, clamped = low < 255 ? low : 255;
        values[k] = inside ? clamped : 0;
    }
}

// quads ((H + 1) x (W + 2), see sample_image) <- image (H, W), through bordered: the image with
// a border of zeros, (H + 2) x (W + 2) bytes and one more, whose borders are zero. Flat loops
// (a row is shorter than the 64 bytes GCC handles at once); a quad's last column is never read.
// restrict, because a uint8 store could alias anything.
static inline void pack_quads(uint32_t *restrict quads, uint8_t *restrict bordered,
                              const uint8_t *restrict image, fcnn_size H, fcnn_size W) {
    const fcnn_size row = W + 2;
    for (fcnn_size i = 0; i < H; i++) memcpy(bordered + (i + 1) * row + 1, image + i * W, W);
    for (fcnn_size q = 0; q < (H + 1) * row; q++) {
        quads[q] = (uint32_t)bordered[q] | (uint32_t)bordered[q + 1] << 8 |
                   (uint32_t)bordered[q + row] << 16 | (uint32_t)bordered[q + row + 1] << 24;
    }
}

// The workspace's layout: the parts shared by every image (with the elastic part, the cells'
// index hashes, the Gaussian taps and the blend tables) and each thread's scratch.
typedef struct {
    field_grid grid;
    uint64_t *hashes;
    float *weights;
    cell_blend rows, columns;
    double *scratches;
    fcnn_size per_thread;
    int identity;
} augment_layout;

// image (H, W) -> out (H, W) warped by the draws of key; scratch: scratch_doubles(H, W, grid,
// elastic), whose borders (see scratch_doubles and smooth_field) are zero; with the elastic
// part, the layout's shared parts prepared by fcnn_augment_prepare
FCNN_HOT static void augment_image(uint8_t *out, double *scratch, const uint8_t *image,
                                   const augment_layout *layout,
                                   const fcnn_augment_settings *settings, uint64_t key,
                                   fcnn_size H, fcnn_size W) {
    // The sampling map, output -> source, is the inverse of the digit's motion: moved by
    // (tx, ty), rotated by theta, scaled by s and sheared by k (x += k y), about the centre.
    const double tx = settings->translate * (2 * fcnn_random_uniform(key, DRAW_TRANSLATE_X) - 1);
    const double ty = settings->translate * (2 * fcnn_random_uniform(key, DRAW_TRANSLATE_Y) - 1);
    const double theta =
        settings->rotate * (2 * fcnn_random_uniform(key, DRAW_ROTATE) - 1) * (M_PI / 180);
    const double s = 1 + settings->scale * (2 * fcnn_random_uniform(key, DRAW_SCALE) - 1);
    const double k = settings->shear * (2 * fcnn_random_uniform(key, DRAW_SHEAR) - 1);
    const double cosine = cos(theta), sine = sin(theta);
    // (1/s) [[1, -k], [0, 1]] [[cos, sin], [-sin, cos]], and the rest, rounded to float
    const float a00 = (float)((cosine + k * sine) / s), a01 = (float)((sine - k * cosine) / s);
    const float a10 = (float)(-sine / s), a11 = (float)(cosine / s);
    const float shift_x = (float)tx, shift_y = (float)ty;
    const float cx = (float)((double)(W - 1) / 2), cy = (float)((double)(H - 1) / 2);
    const int elastic = elastic_on(settings);
    const field_grid grid = layout->grid;
    // A cell's draw stands for the mean of step x step pixels' draws, whose spread is 1 / step
    // of one pixel's: folded into alpha (a power of two, so exact).
    const float alpha = (float)(settings->elastic_alpha / (double)grid.step);
    const fcnn_size C = H * W, Hc = grid.Hc, Wc = grid.Wc, P = grid.P, V = round_to_lanes(Wc);
    float *source_x = (float *)scratch, *source_y = source_x + C, *values = source_y + C;
    uint32_t *quads = (uint32_t *)(values + C);
    uint8_t *bordered = (uint8_t *)(quads + (H + 1) * (W + 2));
    // The fields from a 64-byte boundary on, smoothed and column-padded ones first: their
    // sizes are whole vectors, so the column pass loads and stores whole cache lines.
    float *smooth_x = align_to_line(bordered + bordered_bytes(H, W)), *smooth_y = smooth_x + Hc * V;
    float *across_x = smooth_y + Hc * V, *across_y = across_x + (Hc + 2 * P) * V;
    float *padded_x = across_y + (Hc + 2 * P) * V, *padded_y = padded_x + Hc * (V + 2 * P);
    float *wide_x = padded_y + Hc * (V + 2 * P), *wide_y = wide_x + Hc * W;
    pack_quads(quads, bordered, image, H, W);
    if (elastic) {
        draw_fields(smooth_x, smooth_y, key, layout->hashes, Hc * Wc);
        smooth_field(smooth_x, padded_x, across_x, layout->weights, Hc, Wc, P);
        smooth_field(smooth_y, padded_y, across_y, layout->weights, Hc, Wc, P);
        widen_field(wide_x, smooth_x, layout->columns, Hc, V, W);
        widen_field(wide_y, smooth_y, layout->columns, Hc, V, W);
    }
    // Source coordinates in loops of their own that vectorise (the same arithmetic per pixel,
    // so the same bits), then the sampling.
    for (fcnn_size i = 0; i < H; i++) {
        const float ry = (float)i - cy - shift_y;
        float *row_x = source_x + i * W, *row_y = source_y + i * W;
        for (fcnn_size j = 0; j < W; j++) {
            const float rx = (float)(int)j - cx - shift_x;  // int: AVX2 converts no int64
            row_x[j] = cx + (a00 * rx + a01 * ry);
            row_y[j] = cy + (a10 * rx + a11 * ry);
        }
        if (elastic) {
            // the fields blended to this row from the rows of cells that bracket it
            const float weight = layout->rows.weight[i], rest = 1 - weight;
            const float *x0 = wide_x + layout->rows.first[i] * W;
            const float *x1 = wide_x + layout->rows.second[i] * W;
            const float *y0 = wide_y + layout->rows.first[i] * W;
            const float *y1 = wide_y + layout->rows.second[i] * W;
            for (fcnn_size j = 0; j < W; j++) {
                row_x[j] = row_x[j] + alpha * (rest * x0[j] + weight * x1[j]);
                row_y[j] = row_y[j] + alpha * (rest * y0[j] + weight * y1[j]);
            }
        }
    }
    sample_image(values, quads, source_x, source_y, H, W);
    for (fcnn_size k = 0; k < C; k++) out[k] = (uint8_t)values[k];
}

// ----------------------------------------------------------------------------
// a batch

// The layout of a workspace of fcnn_augment_workspace bytes for these settings
static augment_layout layout_of(void *workspace, fcnn_size H, fcnn_size W,
                                const fcnn_augment_settings *settings) {
    augment_layout layout = {.grid = field_grid_of(H, W, settings)};
    const int elastic = elastic_on(settings);
    const fcnn_size Cc = layout.grid.Hc * layout.grid.Wc;
    double *shared = workspace;
    layout.scratches = shared;
    if (elastic) {
        layout.hashes = workspace;
        layout.weights = (float *)(shared + Cc);
        int32_t *tables = (int32_t *)(shared + Cc + taps_doubles(layout.grid.P));
        layout.rows = (cell_blend){tables, tables + H, (float *)(tables + 2 * H)};
        tables += 3 * H;
        layout.columns = (cell_blend){tables, tables + W, (float *)(tables + 2 * W)};
        layout.scratches = shared + shared_doubles(H, W, layout.grid);
    }
    layout.per_thread = scratch_doubles(H, W, layout.grid, elastic);
    layout.identity = settings->translate == 0 && settings->rotate == 0 &&
                      settings->scale == 0 && settings->shear == 0 && !elastic;
    return layout;
}

void fcnn_augment_prepare(void *workspace, fcnn_size H, fcnn_size W,
                          const fcnn_augment_settings *settings, int num_threads) {
    augment_layout layout = layout_of(workspace, H, W, settings);
    if (layout.hashes != NULL) {
        const field_grid grid = layout.grid;
        gaussian_taps(layout.weights, grid.P, grid.radius,
                      settings->elastic_sigma / (double)grid.step);
        index_hashes(layout.hashes, ELASTIC_FIRST, grid.Hc * grid.Wc);
        blend_table(layout.rows, H, grid.Hc, grid.step);
        blend_table(layout.columns, W, grid.Wc, grid.step);
    }
    // The scratch's borders are read as zeros and never written: cleared once here, not per
    // image or per call of fcnn_augment_rows.
    if (!layout.identity) {
        memset(layout.scratches, 0,
               (size_t)num_threads * (size_t)layout.per_thread * sizeof(double));
    }
}

void fcnn_augment_rows(uint8_t *out, void *workspace, int thread, const uint8_t *images,
                       const int64_t *indices, fcnn_size b0, fcnn_size b1, fcnn_size H,
                       fcnn_size W, const fcnn_augment_settings *settings, uint64_t seed,
                       int64_t first_stream) {
    const fcnn_size C = H * W;
    augment_layout layout = layout_of(workspace, H, W, settings);
#ifdef AUGMENT_HAVE_MXCSR
    // NumPy keeps subnormals: so does the warp, whatever mode the caller runs in.
    const unsigned saved_mode = _mm_getcsr();
    _mm_setcsr(saved_mode & ~0x8040u);
#endif
    double *scratch = layout.identity ? NULL : layout.scratches + thread * layout.per_thread;
    for (fcnn_size b = b0; b < b1; b++) {
        const uint8_t *image = images + indices[b] * C;
        if (layout.identity) {
            memcpy(out + b * C, image, (size_t)C);
        } else {
            uint64_t key = fcnn_random_key(seed, (uint64_t)first_stream + (uint64_t)b);
            augment_image(out + b * C, scratch, image, &layout, settings, key, H, W);
        }
    }
#ifdef AUGMENT_HAVE_MXCSR
    _mm_setcsr(saved_mode);
#endif
}

// images (N, H, W) uint8, indices (B) -> out (B, H, W): image indices[b] warped with the
// stream first_stream + b of seed; workspace of fcnn_augment_workspace(H, W, settings,
// num_threads) bytes (NULL when that is 0).
void fcnn_augment(uint8_t *out, void *workspace, const uint8_t *images, const int64_t *indices,
                  fcnn_size B, fcnn_size H, fcnn_size W, const fcnn_augment_settings *settings,
                  uint64_t seed, int64_t first_stream, int num_threads) {
    fcnn_augment_prepare(workspace, H, W, settings, num_threads);
#pragma omp parallel num_threads(num_threads)
    {
        // each thread's share of the images, in one piece
#ifdef _OPENMP
        const int threads = omp_get_num_threads();
#else
        const int threads = 1;
#endif
        const int thread = fcnn_thread_index();
        const fcnn_size b0 = B * thread / threads, b1 = B * (thread + 1) / threads;
        fcnn_augment_rows(out, workspace, thread, images, indices, b0, b1, H, W, settings, seed,
                          first_stream);
    }
}
