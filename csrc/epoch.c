// The fused training epoch of a plain MLP (Linear, ReLU, [Dropout], ..., Linear, softmax-cross-
// entropy): batch gathering from the raw images, forward, loss, backward and the SGD update in
// one call, in one workspace allocated by the caller. The epoch only calls the layer kernels
// (linear.c, activation.c, dropout.c, loss.c, optim.c); what is its own is the batch gathering
// and, for uint8 images, the first layer on column panels (first_layer.h): on sparse batches
// (MNIST: ~19% of pixels are non-zero) its forward product runs over CSR rows and its weight
// gradient over CSC columns, on dense ones over register tiles, in the same summation order;
// the gradient is folded straight into the SGD update so that of the largest weight matrix is
// never stored. Dropout (dropout.c) works in place on the hidden activations and needs no
// workspace: a dropped unit's output is 0, so the backward of the ReLU read from the dropout's
// output stops the gradient where the mask did (fcnn_relu_dropout_backward), undrawn.
//
// Augmentation: with data->augment, each batch's images are first warped (augment.c) into a
// workspace part of their own, then gathered from there in order: the sparse first layer
// sees the warped pixels as it would any uint8 batch.
//
// Lazy updates: with momentum or weight decay, a first-layer row whose pixel is absent from a
// batch has a zero gradient, and its step is the affine map (w, v) <- (keep w - lr s v,
// m v) (keep = 1 - weight_decay lr; s = m plain, m^2 Nesterov). Such rows are not rewritten:
// the maps of the steps they missed, each with its own rate, are composed in double and
// applied when the row is next read, and at the end of the call.
//
// Sparse or dense, per batch: from a cost model of the two first-layer paths, calibrated by
// timing them at the first call of each shape in the process (see calibrate below), unless
// the caller forces a density threshold. Both paths give the same bits: the choice changes
// the speed only, so timing noise cannot make two runs differ.
//
// Threads: OpenMP over column blocks of the first layer (each output element has one owner and
// one summation order, so the first layer does not depend on the thread count); with one
// hidden layer on panels, the output layer runs in the same blocks (output_layer); otherwise
// the other layers' products split by columns (fcnn_gemm), the BLAS held at one thread
// meanwhile (threads.c). Every parallel region runs with FTZ/DAZ on.
#ifndef FCNN_TEMPLATE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cblas.h"
#include "kernels.h"
#include "random.h"

// ----------------------------------------------------------------------------
// workspace layout, shared by both dtypes: one table sizes it and carves it

typedef enum {
    // A gathered batch (a "slot"); a second slot follows when the next batch is gathered
    // during this one's update (batch_slots).
    PART_BATCH,            // dense batch (B, C0), or the CSR values
    PART_CSC_VALUES,       // (B * C0)
    PART_CSR_COLUMNS,      // int32 (B * C0)
    PART_CSC_ROWS,         // int32 (B * C0)
    PART_ROW_START,        // fcnn_size (B + 1)
    PART_COLUMN_START,     // fcnn_size (C0 + 1)
    PART_COLUMN_COUNTS,    // fcnn_size (C0): non-zeros of each input in the batch
    PART_BATCH_LABELS,     // int64 (B)
    SLOT_PARTS,            // the parts of the second slot, in the same order, start here
    PART_ACTIVATIONS = 2 * SLOT_PARTS,  // sum over layers of (B, sizes[l]), l = 1..L
    PART_GRAD_A,           // gradient ping-pong (B, widest)
    PART_GRAD_B,
    PART_DWEIGHT,          // the largest dense weight gradient
    PART_DBIAS,            // (widest)
    PART_PANELS,           // first-layer weight as panels (see repack)
    PART_VELOCITY_PANELS,  // its velocity, likewise
    PART_SCRATCH,          // per thread: B panel rows
    PART_STEPS_DONE,       // fcnn_size (C0): steps applied so far to each first-layer row
    PART_CATCH_UP,         // double (C0, 3): composed maps of the rows caught up this step
    PART_CATCH_UP_ROWS,    // int32 (C0)
    PART_AUGMENTED,        // uint8 (B, C0): the batch's images warped (augment.c)
    PART_AUGMENTED_ROWS,   // int64 (B): 0..B-1, the batch's indices into them
    PART_AUGMENT_SCRATCH,  // fcnn_augment_workspace
    PART_LOGIT_SHARES,     // (blocks, B, K) with one hidden layer on panels: see output_layer
    NUM_PARTS
} epoch_part;

// Rounds a byte count up to 64 so every workspace part starts on a cache line.
static fcnn_size round_up(fcnn_size bytes) { return (bytes + 63) / 64 * 64; }

// a * b * c, or -1 when it overflows (or an operand is negative).
static fcnn_size checked_product(fcnn_size a, fcnn_size b, fcnn_size c) {
    fcnn_size ab, abc;
    if (a < 0 || b < 0 || c < 0 || __builtin_mul_overflow(a, b, &ab) ||
        __builtin_mul_overflow(ab, c, &abc) || abc > PTRDIFF_MAX - 64) {
        return -1;
    }
    return abc;
}

// Batch slots of the epoch: two, so that the next batch is warped and gathered during this
// one's update, unless a slot is large (batches of many samples are few: the overlap would
// save little and cost memory) or the batch is tiny (a few images gather in a microsecond,
// less than handing them over costs: batch 1 took 160 against 125 us per sample).
static int batch_slots(fcnn_size B, fcnn_size C0, fcnn_size item) {
    return B >= 8 && B <= (1 << 22) / C0 / item ? 2 : 1;
}

// Images per item of the side job that warps the next batch (run_side_job).
#define AUGMENT_ITEM 4

// Bytes of each part for net, batches of B, item = sizeof(real), num_threads threads;
// returns the total (parts rounded to cache lines), or -1 on overflow.
static fcnn_size epoch_layout(fcnn_size bytes[NUM_PARTS], const fcnn_mlp *net, fcnn_size B,
                              fcnn_size item, int num_threads,
                              const fcnn_epoch_augment *augment) {
    const fcnn_size L = net->num_layers, *sizes = net->sizes, C0 = sizes[0];
    fcnn_size widest = 0, largest_weight = 0, activations = 0;
    for (fcnn_size l = 1; l <= L; l++) {
        widest = sizes[l] > widest ? sizes[l] : widest;
        fcnn_size layer = checked_product(B, sizes[l], item);
        if (layer < 0 || activations > PTRDIFF_MAX / 2 - layer) return -1;
        activations += round_up(layer);
    }
    for (fcnn_size l = 0; l < L; l++) {
        fcnn_size weight = checked_product(sizes[l], sizes[l + 1], 1);
        if (weight < 0) return -1;
        largest_weight = weight > largest_weight ? weight : largest_weight;
    }
    fcnn_size block = FCNN_PANEL_BYTES / item;
    fcnn_size num_blocks = (sizes[1] + block - 1) / block;
    bytes[PART_BATCH] = checked_product(B, C0, item);
    bytes[PART_CSC_VALUES] = checked_product(B, C0, item);
    bytes[PART_CSR_COLUMNS] = checked_product(B, C0, sizeof(int32_t));
    bytes[PART_CSC_ROWS] = checked_product(B, C0, sizeof(int32_t));
    bytes[PART_ROW_START] = checked_product(B + 1, sizeof(fcnn_size), 1);
    bytes[PART_COLUMN_START] = checked_product(C0 + 1, sizeof(fcnn_size), 1);
    bytes[PART_COLUMN_COUNTS] = checked_product(C0, sizeof(fcnn_size), 1);
    bytes[PART_BATCH_LABELS] = checked_product(B, sizeof(int64_t), 1);
    const int second_slot = batch_slots(B, C0, item) == 2;
    for (int part = 0; part < SLOT_PARTS; part++) {
        bytes[SLOT_PARTS + part] = second_slot ? bytes[part] : 0;
    }
    bytes[PART_ACTIVATIONS] = activations;
    bytes[PART_GRAD_A] = checked_product(B, widest, item);
    bytes[PART_GRAD_B] = checked_product(B, widest, item);
    bytes[PART_DWEIGHT] = checked_product(largest_weight, item, 1);
    bytes[PART_DBIAS] = checked_product(widest, item, 1);
    bytes[PART_PANELS] = checked_product(num_blocks, C0, FCNN_PANEL_BYTES);
    bytes[PART_VELOCITY_PANELS] = bytes[PART_PANELS];
    bytes[PART_SCRATCH] = checked_product(num_threads, B, FCNN_PANEL_BYTES);
    bytes[PART_STEPS_DONE] = checked_product(C0, sizeof(fcnn_size), 1);
    bytes[PART_CATCH_UP] = checked_product(C0, 3, sizeof(double));
    bytes[PART_CATCH_UP_ROWS] = checked_product(C0, sizeof(int32_t), 1);
    const int augmenting = augment != NULL;
    bytes[PART_AUGMENTED] = checked_product(augmenting ? B : 0, C0, 1);
    bytes[PART_AUGMENTED_ROWS] = checked_product(augmenting ? B : 0, sizeof(int64_t), 1);
    bytes[PART_AUGMENT_SCRATCH] =
        augmenting ? fcnn_augment_workspace(augment->height, augment->width, &augment->settings,
                                            num_threads)
                   : 0;
    const fcnn_size K = sizes[L], shares = L == 2 ? checked_product(num_blocks, B, K) : 0;
    bytes[PART_LOGIT_SHARES] = shares < 0 ? -1 : checked_product(shares, item, 1);
    // 63 bytes to spare: carve_workspace starts at the first cache line of the block, which
    // malloc places anywhere (glibc puts large blocks 16 bytes past a page boundary).
    fcnn_size total = 63;
    for (int part = 0; part < NUM_PARTS; part++) {
        if (bytes[part] < 0 || total > PTRDIFF_MAX / 2 - bytes[part]) return -1;
        total += round_up(bytes[part]);
    }
    return total;
}

fcnn_size fcnn_train_epoch_workspace(const fcnn_mlp *net, fcnn_size B, fcnn_size item,
                                     int num_threads, const fcnn_epoch_augment *augment) {
    fcnn_size bytes[NUM_PARTS];
    return epoch_layout(bytes, net, B, item, num_threads, augment);
}

// Points parts[] into workspace by the same table that sized it, each on a cache line: a
// 64-byte vector load that straddles two lines costs two (the first-layer kernels ran 25%
// slower from a malloc'd block's own start).
static void carve_workspace(void *parts[NUM_PARTS], void *workspace, const fcnn_mlp *net,
                            fcnn_size B, fcnn_size item, int num_threads,
                            const fcnn_epoch_augment *augment) {
    fcnn_size bytes[NUM_PARTS];
    epoch_layout(bytes, net, B, item, num_threads, augment);
    char *cursor = (char *)workspace + (64 - (uintptr_t)workspace % 64) % 64;
    for (int part = 0; part < NUM_PARTS; part++) {
        parts[part] = cursor;
        cursor += round_up(bytes[part]);
    }
}

// The key of the dropout mask after layer l's ReLU in batch `step` of the call: the stream of
// its training step, counted as Dropout layers count them (fcnn/functional.py).
static uint64_t dropout_key(const fcnn_mlp *net, fcnn_size l, fcnn_size step) {
    return fcnn_random_key(net->dropout_seeds[l], net->dropout_steps[l] + (uint64_t)step);
}

// ----------------------------------------------------------------------------
// the cost model of the first layer, shared by both dtypes

// Seconds of the first layer per batch: sparse = per_nonzero * nnz + per_row * present rows
// (rows with a non-zero, the only ones updated), dense = dense_batch for a whole batch.
typedef struct {
    fcnn_size item, C, H, B;
    int num_threads, use_velocity;
    double per_nonzero, per_row, dense_batch;
} first_layer_costs;

#define COST_CACHE_SIZE 16
static first_layer_costs cost_cache[COST_CACHE_SIZE];
static int cost_cache_used = 0;
static pthread_mutex_t cost_cache_lock = PTHREAD_MUTEX_INITIALIZER;

// Looks up the costs of a shape; returns 1 and fills *costs when known.
static int find_costs(first_layer_costs *costs) {
    int found = 0;
    pthread_mutex_lock(&cost_cache_lock);
    for (int i = 0; i < cost_cache_used && !found; i++) {
        const first_layer_costs *entry = &cost_cache[i];
        if (entry->item == costs->item && entry->C == costs->C && entry->H == costs->H &&
            entry->B == costs->B && entry->num_threads == costs->num_threads &&
            entry->use_velocity == costs->use_velocity) {
            *costs = *entry;
            found = 1;
        }
    }
    pthread_mutex_unlock(&cost_cache_lock);
    return found;
}

// Remembers the costs of a shape; the first calibration of a shape wins, so every later call
// in the process makes the same choices. Returns the costs kept.
static first_layer_costs keep_costs(first_layer_costs costs) {
    pthread_mutex_lock(&cost_cache_lock);
    first_layer_costs kept = costs;
    int found = 0;
    for (int i = 0; i < cost_cache_used && !found; i++) {
        const first_layer_costs *entry = &cost_cache[i];
        if (entry->item == costs.item && entry->C == costs.C && entry->H == costs.H &&
            entry->B == costs.B && entry->num_threads == costs.num_threads &&
            entry->use_velocity == costs.use_velocity) {
            kept = *entry;
            found = 1;
        }
    }
    if (!found) {
        // A full cache forgets its oldest shape.
        if (cost_cache_used == COST_CACHE_SIZE) {
            memmove(cost_cache, cost_cache + 1, (COST_CACHE_SIZE - 1) * sizeof cost_cache[0]);
            cost_cache_used--;
        }
        cost_cache[cost_cache_used++] = costs;
    }
    pthread_mutex_unlock(&cost_cache_lock);
    return kept;
}

// Zeroed bytes that start on a cache line, as the workspace's parts do, or NULL; for free().
static void *zeroed_lines(fcnn_size bytes) {
    void *block = aligned_alloc(64, (size_t)round_up(bytes));
    if (block != NULL) memset(block, 0, (size_t)bytes);
    return block;
}

static double seconds_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

// Composes the zero-gradient SGD steps [from, to) of a first-layer row into (w, v) <-
// (a w + b v, c v): map[0..2] = a, b, c. s is the velocity's share of a step (m, or m^2 with
// Nesterov).
static void compose_steps(double *map, fcnn_size from, fcnn_size to, const double *lrs,
                          double weight_decay, double momentum, double s) {
    double a = 1, b = 0, c = 1;
    for (fcnn_size step = from; step < to; step++) {
        double keep = 1 - weight_decay * lrs[step];
        b = keep * b - lrs[step] * s * c;
        a = keep * a;
        c = momentum * c;
    }
    map[0] = a, map[1] = b, map[2] = c;
}

// Which build of a first-layer kernel runs (first_layer.h), by its vector bytes: the CPU's
// (fcnn_vector_bytes: 64 with AVX-512, 32 with AVX2, 16 without), and 32 for the update
// kernel on sparse batches on AMD family 19h (Zen 4, the only one of that
// family with AVX-512). Zen 4 runs 512-bit multiply-adds as two 256-bit halves; there
// (benchmarks/bench_kernel.py, min of many runs) the AVX-512 build was faster for the forward
// kernel (11% sparse, 13% dense) and for the dense update (12%), but the AVX2 build 7% faster
// for the sparse update. Zen 5 (family 1Ah) has full 512-bit units: there the AVX-512 build is
// faster for both kernels (forward 16%, sparse update 11%). Both builds give the same bits.
typedef enum { FORWARD_KERNEL, UPDATE_KERNEL } first_layer_kernel;

// Work done beside a parallel kernel's own: num_items items, shared out among its threads
// (item(arg, i, thread)), then finish(arg), once, by the thread that ends the last item (by
// any one thread when there are none). done counts the items ended; it starts at 0.
typedef struct {
    fcnn_size num_items;
    void (*item)(void *arg, fcnn_size i, int thread);
    void (*finish)(void *arg);
    void *arg;
    fcnn_size done;
} side_job;

// side's items and finish on the calling thread of a parallel region, beside the kernel's own
// work that follows (its `omp for` takes what the others leave); side may be NULL.
static inline void run_side_job(side_job *side, int thread) {
    if (side == NULL) return;
    if (side->num_items == 0) {
#pragma omp single nowait
        side->finish(side->arg);
        return;
    }
#pragma omp for schedule(dynamic, 1) nowait
    for (fcnn_size i = 0; i < side->num_items; i++) {
        side->item(side->arg, i, thread);
        // the last to end an item sees every item's writes (release, then acquire)
        if (__atomic_add_fetch(&side->done, 1, __ATOMIC_ACQ_REL) == side->num_items) {
            side->finish(side->arg);
        }
    }
}

// Work on the column block [j0, j0 + width) of a first-layer kernel's output or gradient, run
// by the thread that owns the block: run(arg, j0, width).
typedef struct {
    void (*run)(void *arg, fcnn_size j0, fcnn_size width);
    void *arg;
} block_hook;

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#include <cpuid.h>

// The CPU's display family (base family, plus the extended family when the base is 0Fh)
static unsigned cpu_family(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    unsigned family = (eax >> 8) & 0xF;
    return family == 0xF ? family + ((eax >> 20) & 0xFF) : family;
}
#endif

static int first_layer_vector_bytes(first_layer_kernel kernel, int sparse) {
    const int bytes = fcnn_vector_bytes();
    if (fcnn_forced_vector_bytes() != 0) return bytes;
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
    static int zen4 = -1;  // a benign race: every thread computes the same answer
    if (zen4 < 0) {
        __builtin_cpu_init();
        zen4 = __builtin_cpu_is("amd") != 0 && cpu_family() == 0x19;
    }
    return bytes == 64 && kernel == UPDATE_KERNEL && sparse && zen4 ? 32 : bytes;
#else
    (void)kernel, (void)sparse;
    return bytes;
#endif
}

#define FCNN_TEMPLATE "epoch.c"
#include "template.h"

#else

#include "sgd_rule.h"

// ----------------------------------------------------------------------------
// the first layer

// Columns per block: FCNN_PANEL_BYTES (64 floats, 32 doubles).
#define BLOCK ((fcnn_size)(FCNN_PANEL_BYTES / sizeof(real)))

// The first layer's weight (C, H) is kept during a call as panels (ceil(H / BLOCK), C, BLOCK):
// panel p holds columns [p * BLOCK, p * BLOCK + BLOCK), zero-padded, contiguous. Read straight
// from the (C, H) array, rows 4 KB apart (H = 1024 floats) all fall in a few cache sets and the
// block thrashes; as a panel it streams from L2.

// weight (C, H) -> panels; panels -> weight when unpack
static void S(repack)(real *panels, real *weight, fcnn_size C, fcnn_size H, int unpack) {
    fcnn_size num_blocks = (H + BLOCK - 1) / BLOCK;
    for (fcnn_size block = 0; block < num_blocks; block++) {
        fcnn_size j0 = block * BLOCK, width = H - j0 < BLOCK ? H - j0 : BLOCK;
        real *panel = panels + block * C * BLOCK;
        for (fcnn_size k = 0; k < C; k++) {
            if (unpack) {
                memcpy(weight + k * H + j0, panel + k * BLOCK, width * sizeof(real));
            } else {
                memcpy(panel + k * BLOCK, weight + k * H + j0, width * sizeof(real));
                for (fcnn_size j = width; j < BLOCK; j++) panel[k * BLOCK + j] = 0;
            }
        }
    }
}

// panel, velocity panel or NULL: rows[i] (num_rows of them) <- maps[i] (compose_steps).
// Inlined, so that it is compiled for the vector width of the kernel that calls it.
static inline __attribute__((always_inline)) void S(catch_up_block)(
    real *panel, real *velocity, const int32_t *rows, const double *maps, fcnn_size num_rows) {
    for (fcnn_size i = 0; i < num_rows; i++) {
        real *w = panel + (fcnn_size)rows[i] * BLOCK;
        const real a = (real)maps[3 * i], b = (real)maps[3 * i + 1], c = (real)maps[3 * i + 2];
        if (velocity == NULL) {
            for (fcnn_size j = 0; j < BLOCK; j++) w[j] = a * w[j];
        } else {
            real *v = velocity + (fcnn_size)rows[i] * BLOCK;
            for (fcnn_size j = 0; j < BLOCK; j++) {
                w[j] = a * w[j] + b * v[j];
                v[j] = c * v[j];
            }
        }
    }
}

// panels and velocity panels (or NULL) with the rows of a catch-up list brought up to date
FCNN_HOT static void S(catch_up)(real *panels, real *velocity_panels, const int32_t *rows,
                                 const double *maps, fcnn_size num_rows, fcnn_size C,
                                 fcnn_size H, int num_threads) {
    fcnn_size num_blocks = (H + BLOCK - 1) / BLOCK;
#pragma omp parallel num_threads(num_threads)
    {
        unsigned saved_fp = fcnn_fp_enter();
#pragma omp for schedule(static)
        for (fcnn_size block = 0; block < num_blocks; block++) {
            real *velocity = velocity_panels == NULL ? NULL : velocity_panels + block * C * BLOCK;
            S(catch_up_block)(panels + block * C * BLOCK, velocity, rows, maps, num_rows);
        }
        fcnn_fp_leave(saved_fp);
    }
}

// The hot kernels, in 64-byte vectors for AVX-512, 32-byte ones for AVX2 and 16-byte ones for
// CPUs without it (first_layer.h); first_layer_vector_bytes picks. Each is compiled for
// several instruction sets, and a build runs outside its own only when a test forces its
// width: the wider ones are slow in plain x86-64 (GCC moves their vectors through memory: the
// 32-byte forward took 3.8 times the 16-byte one's time there, bench_kernel.py on Zen 1 with
// the clones turned off), and the 16-byte one's AVX2 clone contracts into multiply-adds as
// the others' do, so that a CPU with AVX2 checks that all three give the same bits.
#define FIRST_LAYER(name) S(name##_avx512)
#define FIRST_LAYER_TARGETS FCNN_HOT
#define VECTOR_BYTES 64
#include "first_layer.h"
#undef FIRST_LAYER
#undef FIRST_LAYER_TARGETS
#undef VECTOR_BYTES
#define FIRST_LAYER(name) S(name##_avx2)
#define FIRST_LAYER_TARGETS FCNN_HOT_AVX2
#define VECTOR_BYTES 32
#include "first_layer.h"
#undef FIRST_LAYER
#undef FIRST_LAYER_TARGETS
#undef VECTOR_BYTES
#define FIRST_LAYER(name) S(name##_sse2)
#define FIRST_LAYER_TARGETS FCNN_HOT_AVX2  // the AVX2 clone for tests: FMA, the same bits
#define VECTOR_BYTES 16
#include "first_layer.h"
#undef FIRST_LAYER
#undef FIRST_LAYER_TARGETS
#undef VECTOR_BYTES

// The build of a first-layer kernel for bytes = 64, 32 or 16
#define FIRST_LAYER_BUILD(name, bytes) \
    ((bytes) == 64 ? S(name##_avx512) : (bytes) == 32 ? S(name##_avx2) : S(name##_sse2))

// batch (sparse: CSR row_start (B+1), cols, vals; dense: x (B, C)) x panels + bias
// -> out (B, H), ReLU'd if relu; first, the rows of the catch-up list are brought up to date.
static void S(first_forward)(real *out, real *panels, real *velocity_panels, const real *bias,
                             const int32_t *catch_up_rows, const double *maps,
                             fcnn_size num_catch_up, const fcnn_size *row_start,
                             const int32_t *cols, const real *vals, const real *x, int sparse,
                             fcnn_size B, fcnn_size C, fcnn_size H, int relu, int num_threads,
                             const block_hook *after_block) {
    FIRST_LAYER_BUILD(first_forward, first_layer_vector_bytes(FORWARD_KERNEL, sparse))(
        out, panels, velocity_panels, bias, catch_up_rows, maps, num_catch_up, row_start, cols,
        vals, x, sparse, B, C, H, relu, num_threads, after_block);
}

// panels (and velocity panels) updated with batch^T dout and the SGD rule, the side job's
// work (or NULL) done first by the threads that come to it; see first_layer.h
static void S(first_update)(real *panels, real *velocity_panels, real *scratch,
                            const fcnn_size *col_start, const fcnn_size *counts,
                            const int32_t *rows, const real *vals, const real *x, int sparse,
                            const real *dout, fcnn_size B, fcnn_size C, fcnn_size H, real lr,
                            real weight_decay, real momentum, int nesterov, int num_threads,
                            side_job *side, const block_hook *before_block) {
    FIRST_LAYER_BUILD(first_update, first_layer_vector_bytes(UPDATE_KERNEL, sparse))(
        panels, velocity_panels, scratch, col_start, counts, rows, vals, x, sparse, dout, B, C,
        H, lr, weight_decay, momentum, nesterov, num_threads, side, before_block);
}

// ----------------------------------------------------------------------------
// the output layer of a one-hidden-layer net, block by block inside the first layer's kernels

// With one hidden layer on panels, the output layer (H -> K, K small: 10 classes) is run in
// pieces of the first layer's column blocks, by the thread that owns each block, while the
// block is in its cache: each block's share of the logits after the forward writes it, and
// the block's hidden gradient, output-weight step and hidden-bias step before the update
// reads it. Done apart, these small products ran on one thread between the parallel kernels
// (0.2 s of a 1.2 s epoch on 2 Zen 1 cores, the other core idle). The shares are summed in
// block order, so the logits do not depend on the thread count.
typedef struct {
    real *hidden;        // (B, H): the first layer's output, ReLU'd, dropped out in place
    real *logit_shares;  // (blocks, B, K): hidden[:, block] @ weight[block, :] per block
    real *weight, *weight_velocity, *dweight;       // the output layer's (H, K), velocity or NULL
    real *hidden_bias, *bias_velocity, *dbias;      // the first layer's (H), velocity or NULL
    const real *dlogits;                            // (B, K)
    real *dhidden;                                  // (B, H)
    fcnn_size B, H, K;
    double dropout;  // rate after the hidden layer, 0 for none
    uint64_t key;    // its mask's key this step
    real lr, weight_decay, momentum;
    int nesterov;
} S(output_layer);

// after the forward writes hidden[:, j0:j0 + width]: dropout on it, then its logit share
static void S(output_forward_block)(void *arg, fcnn_size j0, fcnn_size width) {
    const S(output_layer) *o = arg;
    const fcnn_size B = o->B, H = o->H, K = o->K;
    if (o->dropout > 0) {
        S(fcnn_dropout_columns)(o->hidden, o->hidden, B, H, j0, width, o->dropout, o->key);
    }
    S(fcnn_gemm)(o->logit_shares + j0 / BLOCK * B * K, o->hidden + j0, o->weight + j0 * K, 0, 0,
                 B, K, width, H, K, K, 1);
}

// logits (B, K) = the shares of the blocks summed in block order, + bias
static void S(output_logits)(real *logits, const real *shares, const real *bias,
                             fcnn_size num_blocks, fcnn_size B, fcnn_size K) {
    memcpy(logits, shares, (size_t)(B * K) * sizeof(real));
    for (fcnn_size block = 1; block < num_blocks; block++) {
        const real *share = shares + block * B * K;
        for (fcnn_size i = 0; i < B * K; i++) logits[i] += share[i];
    }
    S(fcnn_add_bias)(logits, bias, B, K);
}

// before the update reads dhidden[:, j0:j0 + width]: that block of the hidden gradient, taken
// before the step changes the output weight's rows of the block; their step; then the
// gradient through dropout and the ReLU, and the step of the block's hidden biases
static void S(output_backward_block)(void *arg, fcnn_size j0, fcnn_size width) {
    const S(output_layer) *o = arg;
    const fcnn_size B = o->B, H = o->H, K = o->K;
    real *dhidden = o->dhidden + j0, *weight = o->weight + j0 * K;
    const real *hidden = o->hidden + j0;
    S(fcnn_gemm)(dhidden, o->dlogits, weight, 0, 1, B, width, K, K, K, H, 1);
    S(fcnn_gemm)(o->dweight + j0 * K, hidden, o->dlogits, 1, 0, width, K, B, H, K, K, 1);
    real *velocity = o->weight_velocity == NULL ? NULL : o->weight_velocity + j0 * K;
    S(fcnn_sgd_step)(weight, velocity, o->dweight + j0 * K, o->lr, o->weight_decay, o->momentum,
                     o->nesterov, width * K);
    for (fcnn_size b = 0; b < B; b++) {
        S(fcnn_relu_dropout_backward)(dhidden + b * H, dhidden + b * H, hidden + b * H, width,
                                      o->dropout);
    }
    S(fcnn_column_sums)(o->dbias + j0, dhidden, B, width, H);
    real *bias_velocity = o->bias_velocity == NULL ? NULL : o->bias_velocity + j0;
    S(fcnn_sgd_step)(o->hidden_bias + j0, bias_velocity, o->dbias + j0, o->lr, o->weight_decay,
                     o->momentum, o->nesterov, width);
}

// ----------------------------------------------------------------------------
// batch gathering

// pixels (N, C) uint8, indices (rows) -> counts[k] = non-zeros of input k in the batch;
// returns the non-zeros, *present = inputs with at least one.
FCNN_HOT static fcnn_size S(count_nonzeros)(fcnn_size *counts, fcnn_size *present,
                                            const uint8_t *pixels, const int64_t *indices,
                                            fcnn_size rows, fcnn_size C) {
    // Shuffled images come from anywhere in the data set: all their lines asked for at once,
    // the misses overlap instead of following each other.
    for (fcnn_size b = 0; b < rows; b++) {
        const uint8_t *image = pixels + indices[b] * C;
        for (fcnn_size k = 0; k < C; k += 64) __builtin_prefetch(image + k, 0, 2);
    }
    for (fcnn_size k = 0; k < C; k++) counts[k] = 0;
    // Tallied in 16-bit lanes, TALLY inputs and up to 65535 rows at a time: a compared byte
    // widens to 16 bits in one step, where adding it to the 64-bit counts took eight per 16
    // bytes (half the serial time of an MNIST batch).
    enum { TALLY = 512 };
    for (fcnn_size k0 = 0; k0 < C; k0 += TALLY) {
        fcnn_size width = C - k0 < TALLY ? C - k0 : TALLY;
        for (fcnn_size b0 = 0; b0 < rows; b0 += 65535) {
            fcnn_size b1 = rows - b0 < 65535 ? rows : b0 + 65535;
            uint16_t tally[TALLY] = {0};
            for (fcnn_size b = b0; b < b1; b++) {
                const uint8_t *image = pixels + indices[b] * C + k0;
                for (fcnn_size k = 0; k < width; k++) tally[k] += image[k] != 0;
            }
            for (fcnn_size k = 0; k < width; k++) counts[k0 + k] += tally[k];
        }
    }
    fcnn_size nonzeros = 0, columns = 0;
    for (fcnn_size k = 0; k < C; k++) {
        nonzeros += counts[k];
        columns += counts[k] != 0;
    }
    *present = columns;
    return nonzeros;
}

// The CSR (row_start, cols, csr_vals) of `rows` rows -> CSC (csc_rows, csc_vals), rows
// ascending within a column, by a counting sort: col_start (C + 1) holds each column's start on
// entry, serves as its cursor, and is shifted back to the starts at the end.
static void S(csr_to_csc)(int32_t *csc_rows, real *csc_vals, fcnn_size *col_start,
                          const fcnn_size *row_start, const int32_t *cols, const real *csr_vals,
                          fcnn_size rows, fcnn_size C) {
    for (fcnn_size b = 0; b < rows; b++) {
        for (fcnn_size q = row_start[b]; q < row_start[b + 1]; q++) {
            fcnn_size slot = col_start[cols[q]]++;
            csc_rows[slot] = (int32_t)b;
            csc_vals[slot] = csr_vals[q];
        }
    }
    for (fcnn_size k = C; k > 0; k--) col_start[k] = col_start[k - 1];
    col_start[0] = 0;
}

// The counts of count_nonzeros -> CSR (row_start, cols, csr_vals) and CSC (col_start, csc_rows,
// csc_vals) of the batch's scaled non-zeros, rows ascending within a column.
static void S(gather_sparse)(fcnn_size *row_start, int32_t *cols, real *csr_vals,
                             fcnn_size *col_start, int32_t *csc_rows, real *csc_vals,
                             const fcnn_size *counts, const uint8_t *pixels,
                             const int64_t *indices, fcnn_size rows, fcnn_size C) {
    col_start[0] = 0;
    for (fcnn_size k = 0; k < C; k++) col_start[k + 1] = col_start[k] + counts[k];
    // Divided, not multiplied by 1/255: the same rounding as the DataLoader.
    real scaled[256];
    for (int value = 0; value < 256; value++) scaled[value] = (real)value / (real)255;
    fcnn_size p = 0;
    for (fcnn_size b = 0; b < rows; b++) {
        const uint8_t *image = pixels + indices[b] * C;
        row_start[b] = p;
        // Within eight pixels, without a branch, which would mispredict at every edge of a
        // digit: each pixel is written at p, and p moves on past the non-zero ones. p never
        // passes the pixel's own index b * C + k, so a zero's write stays within the (B * C)
        // parts. Eight zeros (most of a digit's margin) are passed over in one test.
        fcnn_size k = 0;
        for (; k + 8 <= C; k += 8) {
            uint64_t eight;
            memcpy(&eight, image + k, sizeof eight);
            if (eight == 0) continue;
            for (fcnn_size j = k; j < k + 8; j++) {
                cols[p] = (int32_t)j;
                csr_vals[p] = scaled[image[j]];
                p += image[j] != 0;
            }
        }
        for (; k < C; k++) {
            cols[p] = (int32_t)k;
            csr_vals[p] = scaled[image[k]];
            p += image[k] != 0;
        }
    }
    row_start[rows] = p;
    S(csr_to_csc)(csc_rows, csc_vals, col_start, row_start, cols, csr_vals, rows, C);
}

// images (N, C) uint8 or real, indices (rows) -> x (rows, C), bytes scaled by 1/255
static void S(gather_dense)(real *x, const void *images, int images_are_bytes,
                            const int64_t *indices, fcnn_size rows, fcnn_size C) {
    for (fcnn_size b = 0; b < rows; b++) {
        if (images_are_bytes) {
            const uint8_t *image = (const uint8_t *)images + indices[b] * C;
            for (fcnn_size k = 0; k < C; k++) x[b * C + k] = (real)image[k] / (real)255;
        } else {
            memcpy(x + b * C, (const real *)images + indices[b] * C, C * sizeof(real));
        }
    }
}

// A gathered batch: its labels and its input, as CSR and CSC when sparse, else dense x.
typedef struct {
    real *x, *csr_vals;  // one part, one of the two per batch
    real *csc_vals;
    int32_t *cols, *csc_rows;
    fcnn_size *row_start, *col_start, *counts;
    int64_t *labels;
    int sparse;
} S(batch_slot);

// The slot of the workspace parts from `first` on (0, or SLOT_PARTS for the second slot).
static S(batch_slot) S(slot_of)(void *parts[NUM_PARTS], int first) {
    S(batch_slot) slot = {
        parts[first + PART_BATCH], parts[first + PART_BATCH], parts[first + PART_CSC_VALUES],
        parts[first + PART_CSR_COLUMNS], parts[first + PART_CSC_ROWS],
        parts[first + PART_ROW_START], parts[first + PART_COLUMN_START],
        parts[first + PART_COLUMN_COUNTS], parts[first + PART_BATCH_LABELS], 0};
    return slot;
}

// One batch to gather into a slot: its rows of data->order, the images to read them from
// (image_rows of images: the data set's, or the warped batch's own), and how to choose
// sparse or dense (packed: sparse is possible; the cost model, or a fixed threshold >= 0).
// When augmenting, the batch is first warped into `augmented` (augment_item) with the
// streams from `first` on, in the workspace that the first batch's fcnn_augment prepared.
typedef struct {
    S(batch_slot) *slot;
    const fcnn_epoch_data *data;
    const int64_t *indices;
    const void *images;
    const int64_t *image_rows;
    fcnn_size rows, C;
    int packed;
    double sparse_threshold;
    const first_layer_costs *costs;
    uint8_t *augmented;
    void *augment_workspace;
    fcnn_size first;
} S(batch_job);

// Images [i * AUGMENT_ITEM, ...) of the job's batch warped into job->augmented, on the
// calling thread with its scratch.
static void S(augment_item)(void *arg, fcnn_size i, int thread) {
    const S(batch_job) *job = arg;
    const fcnn_epoch_augment *augment = job->data->augment;
    fcnn_size b0 = i * AUGMENT_ITEM;
    fcnn_size b1 = job->rows - b0 < AUGMENT_ITEM ? job->rows : b0 + AUGMENT_ITEM;
    fcnn_augment_rows(job->augmented, job->augment_workspace, thread, job->data->images,
                      job->indices, b0, b1, augment->height, augment->width,
                      &augment->settings, augment->seed,
                      augment->first_stream + (int64_t)job->first);
}

// The job of the batch of samples [first, first + B) of data->order (fewer at the end) into
// slot; when augmenting, read from the warped images.
static S(batch_job) S(job_for)(S(batch_slot) *slot, const fcnn_epoch_data *data,
                               fcnn_size first, fcnn_size B, fcnn_size C, int packed,
                               double sparse_threshold, const first_layer_costs *costs,
                               uint8_t *augmented, const int64_t *augmented_rows,
                               void *augment_workspace) {
    fcnn_size rows = data->num_samples - first < B ? data->num_samples - first : B;
    const int64_t *indices = data->order + first;
    const int warped = data->augment != NULL;
    S(batch_job) job = {slot, data, indices,
                        warped ? (const void *)augmented : data->images,
                        warped ? augmented_rows : indices, rows, C, packed, sparse_threshold,
                        costs, augmented, augment_workspace, first};
    return job;
}

// job -> its slot filled: labels, then the non-zero counts, the choice and the gathered input.
// Touches nothing but the slot: it may run beside the previous batch's update.
static void S(gather_batch)(void *arg) {
    const S(batch_job) *job = arg;
    S(batch_slot) *slot = job->slot;
    const fcnn_size rows = job->rows, C = job->C;
    for (fcnn_size b = 0; b < rows; b++) slot->labels[b] = job->data->labels[job->indices[b]];
    slot->sparse = 0;
    if (job->packed) {
        fcnn_size present;
        fcnn_size nonzeros =
            S(count_nonzeros)(slot->counts, &present, job->images, job->image_rows, rows, C);
        if (job->sparse_threshold < 0) {
            double sparse_cost = job->costs->per_nonzero * (double)nonzeros +
                                 job->costs->per_row * (double)present;
            slot->sparse = sparse_cost < job->costs->dense_batch;
        } else {
            slot->sparse = (double)nonzeros < job->sparse_threshold * (double)(rows * C);
        }
    }
    if (slot->sparse) {
        S(gather_sparse)(slot->row_start, slot->cols, slot->csr_vals, slot->col_start,
                         slot->csc_rows, slot->csc_vals, slot->counts, job->images,
                         job->image_rows, rows, C);
    } else {
        S(gather_dense)(slot->x, job->images, job->data->images_are_bytes, job->image_rows,
                        rows, C);
    }
}

// ----------------------------------------------------------------------------
// calibration of the cost model

// A synthetic sparse batch (B, C) of the given density in which every column appears, as
// CSR and CSC (gather_sparse's layout); returns its non-zeros.
static fcnn_size S(synthetic_batch)(fcnn_size *row_start, int32_t *cols, real *csr_vals,
                                    fcnn_size *col_start, int32_t *csc_rows, real *csc_vals,
                                    double density, fcnn_size B, fcnn_size C) {
    fcnn_size p = 0, period = (fcnn_size)(1 / density + 0.5);
    for (fcnn_size k = 0; k <= C; k++) col_start[k] = 0;
    for (fcnn_size b = 0; b < B; b++) {
        row_start[b] = p;
        for (fcnn_size k = 0; k < C; k++) {
            if ((b + k * 7) % period == 0 || b == k % B) {
                cols[p] = (int32_t)k;
                csr_vals[p++] = (real)0.5;
                col_start[k + 1]++;
            }
        }
    }
    row_start[B] = p;
    for (fcnn_size k = 0; k < C; k++) col_start[k + 1] += col_start[k];
    S(csr_to_csc)(csc_rows, csc_vals, col_start, row_start, cols, csr_vals, B, C);
    return p;
}

// Times the first layer's two paths on synthetic batches of this shape (C inputs, H columns,
// batches of B, with or without velocity, on num_threads threads) into costs; returns -1 when
// out of memory. Sparse: two densities with every column present, solved for the cost per
// non-zero and per updated row; dense: one whole batch. The three are timed in turn, up to
// seven rounds, and each keeps its fastest: a busy machine slows all three alike.
static int S(calibrate)(first_layer_costs *costs, fcnn_size C, fcnn_size H, fcnn_size B,
                        int use_velocity, int num_threads) {
    enum { ROUNDS = 7 };
    const double densities[2] = {0.1, 0.4};
    fcnn_size num_blocks = (H + BLOCK - 1) / BLOCK, panel_size = num_blocks * C * BLOCK;
    fcnn_size scratch_size = (fcnn_size)num_threads * B * BLOCK;
    // aligned as the workspace is, so that the timings are the epoch's
    real *panels = zeroed_lines(panel_size * (fcnn_size)sizeof(real));
    real *velocity = zeroed_lines(panel_size * (fcnn_size)sizeof(real));
    real *out = zeroed_lines(B * H * (fcnn_size)sizeof(real));
    real *dout = zeroed_lines(B * H * (fcnn_size)sizeof(real));
    real *scratch = zeroed_lines(scratch_size * (fcnn_size)sizeof(real));
    real *bias = zeroed_lines(H * (fcnn_size)sizeof(real));
    real *x = zeroed_lines(B * C * (fcnn_size)sizeof(real));
    real *vals = zeroed_lines(4 * B * C * (fcnn_size)sizeof(real));
    int32_t *indices = zeroed_lines(4 * B * C * (fcnn_size)sizeof(int32_t));
    fcnn_size *starts = zeroed_lines((2 * (B + 1) + 2 * (C + 1)) * (fcnn_size)sizeof(fcnn_size));
    fcnn_size *counts = zeroed_lines(C * (fcnn_size)sizeof(fcnn_size));
    int ok = panels && velocity && out && dout && scratch && bias && x && vals && indices &&
             starts && counts;
    if (ok) {
        for (fcnn_size i = 0; i < panel_size; i++) panels[i] = (real)0.01;
        for (fcnn_size i = 0; i < B * H; i++) dout[i] = (real)0.001;
        for (fcnn_size i = 0; i < B * C; i++) x[i] = (real)0.5;
        for (fcnn_size k = 0; k < C; k++) counts[k] = 1;  // every input present, in all three
        real *velocity_panels = use_velocity ? velocity : NULL;
        // batch i: CSR and CSC values and indices in the i-th quarters / halves of the buffers
        fcnn_size nonzeros[2];
        for (int i = 0; i < 2; i++) {
            nonzeros[i] = S(synthetic_batch)(
                starts + i * (B + 1), indices + 2 * i * B * C, vals + 2 * i * B * C,
                starts + 2 * (B + 1) + i * (C + 1), indices + (2 * i + 1) * B * C,
                vals + (2 * i + 1) * B * C, densities[i], B, C);
        }
        double best[3] = {1e300, 1e300, 1e300}, started = seconds_now();
        // Large layers: fewer rounds once a tenth of a second is spent (at least two).
        for (int round = 0; round < ROUNDS && (round < 2 || seconds_now() - started < 0.1);
             round++) {
            for (int path = 0; path < 3; path++) {
                int sparse = path < 2, i = path < 2 ? path : 0;
                const fcnn_size *row_start = starts + i * (B + 1);
                const fcnn_size *col_start = starts + 2 * (B + 1) + i * (C + 1);
                double start = seconds_now();
                S(first_forward)(out, panels, velocity_panels, bias, NULL, NULL, 0, row_start,
                                 indices + 2 * i * B * C, vals + 2 * i * B * C, x, sparse, B, C,
                                 H, 1, num_threads, NULL);
                S(first_update)(panels, velocity_panels, scratch, col_start, counts,
                                indices + (2 * i + 1) * B * C, vals + (2 * i + 1) * B * C, x,
                                sparse, dout, B, C, H, (real)1e-6, (real)1e-4, (real)0.5, 0,
                                num_threads, NULL, NULL);
                double elapsed = seconds_now() - start;
                best[path] = elapsed < best[path] ? elapsed : best[path];
            }
        }
        double per_nonzero = (best[1] - best[0]) / (double)(nonzeros[1] - nonzeros[0]);
        double per_row = (best[0] - per_nonzero * (double)nonzeros[0]) / (double)C;
        if (!(per_nonzero > 0) || !(per_row >= 0)) {  // timing noise: all of it per non-zero
            per_nonzero = best[1] / (double)nonzeros[1];
            per_row = 0;
        }
        costs->per_nonzero = per_nonzero;
        costs->per_row = per_row;
        costs->dense_batch = best[2];
    }
    free(panels), free(velocity), free(out), free(dout), free(scratch), free(bias), free(x);
    free(vals), free(indices), free(starts), free(counts);
    return ok ? 0 : -1;
}

// ----------------------------------------------------------------------------
// the epoch

// net: L layers (fcnn_mlp); data: the samples in batches of B; sgd: the rule and one rate per
// batch. sparse_threshold < 0: the cost model picks sparse or dense per batch; else a batch
// with fewer than sparse_threshold * rows * C0 non-zeros goes sparse. Parameters and velocities
// are updated in place. -> *loss_sum (sum of per-sample losses), *correct; returns the steps
// done: fewer than the batches when a loss was not finite (that batch's update is not applied).
fcnn_size S(fcnn_train_epoch)(double *loss_sum, int64_t *correct, const fcnn_mlp *net,
                              void *workspace, const fcnn_epoch_data *data,
                              const fcnn_sgd_settings *sgd, double sparse_threshold,
                              int num_threads) {
    const fcnn_size L = net->num_layers, *sizes = net->sizes;
    const fcnn_size C0 = sizes[0], H = sizes[1], K = sizes[L];
    const fcnn_size M = data->num_samples, B = data->batch_size < M ? data->batch_size : M;
    real *weights[FCNN_MAX_LAYERS], *biases[FCNN_MAX_LAYERS];
    real *weight_velocities[FCNN_MAX_LAYERS], *bias_velocities[FCNN_MAX_LAYERS];
    const int use_velocity = sgd->momentum > 0;
    for (fcnn_size l = 0; l < L; l++) {
        weights[l] = net->weights[l];
        biases[l] = net->biases[l];
        weight_velocities[l] = use_velocity ? net->weight_velocities[l] : NULL;
        bias_velocities[l] = use_velocity ? net->bias_velocities[l] : NULL;
    }
    void *parts[NUM_PARTS];
    carve_workspace(parts, workspace, net, B, sizeof(real), num_threads, data->augment);
    // Two slots: batch step + 1 is gathered into one while batch step's update runs.
    const int num_slots = batch_slots(B, C0, sizeof(real));
    S(batch_slot) slots[2] = {S(slot_of)(parts, 0), S(slot_of)(parts, SLOT_PARTS)};
    real *acts[FCNN_MAX_LAYERS + 1];
    char *cursor = parts[PART_ACTIVATIONS];
    for (fcnn_size l = 1; l <= L; l++) {
        acts[l] = (real *)cursor;
        cursor += round_up(B * sizes[l] * (fcnn_size)sizeof(real));
    }
    real *grad_a = parts[PART_GRAD_A], *grad_b = parts[PART_GRAD_B];
    real *dweight = parts[PART_DWEIGHT], *dbias = parts[PART_DBIAS];
    real *panels = parts[PART_PANELS];
    real *velocity_panels = use_velocity ? parts[PART_VELOCITY_PANELS] : NULL;
    real *scratch = parts[PART_SCRATCH];
    fcnn_size *steps_done = parts[PART_STEPS_DONE];
    double *maps = parts[PART_CATCH_UP];
    int32_t *catch_up_rows = parts[PART_CATCH_UP_ROWS];
    uint8_t *augmented = parts[PART_AUGMENTED];
    int64_t *augmented_rows = parts[PART_AUGMENTED_ROWS];
    const fcnn_epoch_augment *augment = data->augment;
    if (augment != NULL) {
        for (fcnn_size b = 0; b < B; b++) augmented_rows[b] = b;
    }

    const real lr_decay = (real)sgd->weight_decay, momentum = (real)sgd->momentum;
    const double velocity_share = sgd->nesterov ? sgd->momentum * sgd->momentum : sgd->momentum;
    // Sparse batches are possible only from bytes; then the first layer lives in panels.
    const int packed = data->images_are_bytes && sparse_threshold != 0;
    // Without decay or momentum a row absent from a batch does not change: nothing to catch up.
    const int lazy = packed && (sgd->weight_decay != 0 || use_velocity);
    // One hidden layer on panels: the output layer runs inside the first layer's kernels.
    const int output_in_blocks = packed && L == 2;
    S(output_layer) output = {
        .hidden = acts[1],
        .logit_shares = parts[PART_LOGIT_SHARES],
        .weight = weights[L - 1],
        .weight_velocity = weight_velocities[L - 1],
        .dweight = dweight,
        .hidden_bias = biases[0],
        .bias_velocity = bias_velocities[0],
        .dbias = dbias,
        .dlogits = grad_a,
        .dhidden = grad_b,
        .H = H,
        .K = K,
        .dropout = net->dropout_rates[0],
        .weight_decay = lr_decay,
        .momentum = momentum,
        .nesterov = sgd->nesterov,
    };
    const block_hook output_forward = {S(output_forward_block), &output};
    const block_hook output_backward = {S(output_backward_block), &output};
    // Every thread of the epoch is OpenMP's; the BLAS runs on the thread that calls it.
    fcnn_blas_scope_enter();
    first_layer_costs costs = {sizeof(real), C0, H, B, num_threads, use_velocity, 0, 0, 0};
    if (packed && sparse_threshold < 0 && !find_costs(&costs)) {
        if (S(calibrate)(&costs, C0, H, B, use_velocity, num_threads) == 0) {
            costs = keep_costs(costs);
        } else {
            sparse_threshold = 0.5;  // out of memory for the calibration: a fixed rule
        }
    }
    if (packed) {
        S(repack)(panels, weights[0], C0, H, 0);
        if (use_velocity) S(repack)(velocity_panels, weight_velocities[0], C0, H, 0);
        for (fcnn_size k = 0; k < C0; k++) steps_done[k] = 0;
    }
    fcnn_size num_batches = (M + B - 1) / B, step;
    double total_loss = 0;
    int64_t total_correct = 0;
    S(batch_job) jobs[2];
    for (step = 0; step < num_batches; step++) {
        fcnn_size first = step * B, rows = M - first < B ? M - first : B;
        const real lr = (real)sgd->lrs[step];
        S(batch_slot) *batch = &slots[num_slots == 2 ? step % 2 : 0];
        S(batch_job) *job = &jobs[step % 2];
        if (step == 0 || num_slots == 1) {  // else warped and gathered during the last update
            *job = S(job_for)(batch, data, first, B, C0, packed, sparse_threshold, &costs,
                              augmented, augmented_rows, parts[PART_AUGMENT_SCRATCH]);
            if (augment != NULL) {
                fcnn_augment(augmented, parts[PART_AUGMENT_SCRATCH], data->images, job->indices,
                             rows, augment->height, augment->width, &augment->settings,
                             augment->seed, augment->first_stream + (int64_t)first,
                             num_threads);
            }
            S(gather_batch)(job);
        }
        const int sparse = batch->sparse;
        const fcnn_size *counts = batch->counts;
        real *x = batch->x;
        acts[0] = x;
        // the first-layer rows of the batch's pixels, the only ones read or updated, caught up
        fcnn_size num_catch_up = 0;
        if (lazy) {
            for (fcnn_size k = 0; k < C0; k++) {
                if (counts[k] == 0) continue;
                if (steps_done[k] < step) {
                    compose_steps(maps + 3 * num_catch_up, steps_done[k], step, sgd->lrs,
                                  (double)lr_decay, (double)momentum, velocity_share);
                    catch_up_rows[num_catch_up++] = (int32_t)k;
                }
                steps_done[k] = step + 1;
            }
        }
        output.B = rows;
        output.lr = lr;
        output.key = dropout_key(net, 0, step);
        // forward
        if (packed) {
            S(first_forward)(acts[1], panels, velocity_panels, biases[0], catch_up_rows, maps,
                             num_catch_up, batch->row_start, batch->cols, batch->csr_vals, x,
                             sparse, rows, C0, H, L > 1, num_threads,
                             output_in_blocks ? &output_forward : NULL);
        } else {
            S(fcnn_linear_forward)(acts[1], x, weights[0], biases[0], rows, C0, H, num_threads);
            if (L > 1) S(fcnn_relu_forward)(acts[1], acts[1], rows * H);
        }
        if (output_in_blocks) {
            S(output_logits)(acts[2], output.logit_shares, biases[1], (H + BLOCK - 1) / BLOCK,
                             rows, K);
        } else {
            for (fcnn_size l = 0; l < L; l++) {
                if (l > 0) {
                    S(fcnn_linear_forward)(acts[l + 1], acts[l], weights[l], biases[l], rows,
                                           sizes[l], sizes[l + 1], num_threads);
                    if (l + 1 < L) {
                        S(fcnn_relu_forward)(acts[l + 1], acts[l + 1], rows * sizes[l + 1]);
                    }
                }
                // in place: the next layer reads, and the backward sees, the units it kept
                if (l + 1 < L && net->dropout_rates[l] > 0) {
                    S(fcnn_dropout_forward)(acts[l + 1], acts[l + 1], rows, sizes[l + 1],
                                            net->dropout_rates[l], dropout_key(net, l, step),
                                            num_threads);
                }
            }
        }
        // loss and accuracy
        real *logits = acts[L];
        double mean_loss;
        const int64_t *batch_labels = batch->labels;
        S(fcnn_softmax_cross_entropy_forward)(&mean_loss, logits, batch_labels, rows, K);
        double batch_loss = mean_loss * (double)rows;
        if (!isfinite(batch_loss)) break;  // stop before this batch's update
        total_loss += batch_loss;
        for (fcnn_size b = 0; b < rows; b++) {
            const real *row = logits + b * K;
            fcnn_size best = 0;
            for (fcnn_size c = 1; c < K; c++) best = row[c] > row[best] ? c : best;
            total_correct += best == batch_labels[b];
        }
        // backward: each layer's input gradient is taken before its weights change
        real *dout = grad_a;
        S(fcnn_softmax_cross_entropy_backward)(dout, logits, batch_labels, rows, K);
        if (output_in_blocks) {
            // the output bias now; the rest of the output layer in the update's blocks
            S(fcnn_bias_backward)(dbias, dout, rows, K);
            S(fcnn_sgd_step)(biases[1], bias_velocities[1], dbias, lr, lr_decay, momentum,
                             sgd->nesterov, K);
            dout = grad_b;
        } else {
            for (fcnn_size l = L - 1; l >= 1; l--) {
                fcnn_size in = sizes[l], out = sizes[l + 1];
                real *din = dout == grad_a ? grad_b : grad_a;
                S(fcnn_linear_backward)(din, dweight, dbias, dout, acts[l], weights[l], rows, in,
                                        out, num_threads);
                // acts[l] > 0 where the ReLU passed and dropout kept: where the gradient flows
                S(fcnn_relu_dropout_backward)(din, din, acts[l], rows * in,
                                              net->dropout_rates[l - 1]);
                S(fcnn_sgd_step)(weights[l], weight_velocities[l], dweight, lr, lr_decay, momentum,
                                 sgd->nesterov, in * out);
                S(fcnn_sgd_step)(biases[l], bias_velocities[l], dbias, lr, lr_decay, momentum,
                                 sgd->nesterov, out);
                dout = din;
            }
        }
        // the next batch, warped and gathered by the update's threads as they come to it
        S(batch_job) *next = &jobs[(step + 1) % 2];
        const int overlap = num_slots == 2 && step + 1 < num_batches;
        if (overlap) {
            *next = S(job_for)(&slots[(step + 1) % 2], data, first + B, B, C0, packed,
                               sparse_threshold, &costs, augmented, augmented_rows,
                               parts[PART_AUGMENT_SCRATCH]);
        }
        fcnn_size warp_items =
            overlap && augment != NULL ? (next->rows + AUGMENT_ITEM - 1) / AUGMENT_ITEM : 0;
        side_job gather_next = {warp_items, S(augment_item), S(gather_batch), next, 0};
        if (packed) {
            if (!output_in_blocks) S(fcnn_bias_backward)(dbias, dout, rows, H);
            S(first_update)(panels, velocity_panels, scratch, batch->col_start, counts,
                            batch->csc_rows, batch->csc_vals, x, sparse, dout, rows, C0, H, lr,
                            lr_decay, momentum, sgd->nesterov, num_threads,
                            overlap ? &gather_next : NULL,
                            output_in_blocks ? &output_backward : NULL);
        } else {
            S(fcnn_linear_backward)(NULL, dweight, dbias, dout, x, weights[0], rows, C0, H,
                                    num_threads);
            S(fcnn_sgd_step)(weights[0], weight_velocities[0], dweight, lr, lr_decay, momentum,
                             sgd->nesterov, C0 * H);
            if (overlap) {
                for (fcnn_size i = 0; i < warp_items; i++) S(augment_item)(next, i, 0);
                S(gather_batch)(next);
            }
        }
        if (!output_in_blocks) {
            S(fcnn_sgd_step)(biases[0], bias_velocities[0], dbias, lr, lr_decay, momentum,
                             sgd->nesterov, H);
        }
    }
    if (lazy) {
        // every row brought to the `step` steps done
        fcnn_size num_catch_up = 0;
        for (fcnn_size k = 0; k < C0; k++) {
            if (steps_done[k] < step) {
                compose_steps(maps + 3 * num_catch_up, steps_done[k], step, sgd->lrs,
                              (double)lr_decay, (double)momentum, velocity_share);
                catch_up_rows[num_catch_up++] = (int32_t)k;
            }
        }
        S(catch_up)(panels, velocity_panels, catch_up_rows, maps, num_catch_up, C0, H,
                    num_threads);
    }
    fcnn_blas_scope_leave();
    if (packed) {
        S(repack)(panels, weights[0], C0, H, 1);
        if (use_velocity) S(repack)(velocity_panels, weight_velocities[0], C0, H, 1);
    }
    *loss_sum = total_loss;
    *correct = total_correct;
    return step;
}

#undef BLOCK

#endif  // FCNN_TEMPLATE
