// Threads and the floating-point environment of fcnn's own work.
//
// Thread count: one process-wide setting that every kernel reads (fcnn_get_threads), so
// fcnn.set_num_threads called from any Python thread takes effect for the next call on
// every thread; omp_set_num_threads would only change the calling thread's setting. Until it
// is set, the count follows OpenMP's default of the calling thread (OMP_NUM_THREADS, or a
// threadpoolctl limit), clamped to [1, FCNN_MAX_THREADS].
//
// The BLAS: fcnn_set_threads sets its count too (also process-wide). fcnn's kernels run all
// their threads as OpenMP's and need the BLAS at one thread meanwhile (products are split by
// column across OpenMP threads, each slice a one-thread BLAS call, all with FTZ/DAZ on):
// fcnn_blas_scope_enter and _leave count the calls in flight under a lock; the first saves the
// BLAS count and sets 1, the last puts it back, and a fcnn_set_threads meanwhile changes what
// will be put back. So concurrent calls can neither leave the BLAS at one thread nor lose a
// new setting, and between fcnn's calls the BLAS is the user's (threadpoolctl sees it).
//
// Subnormals: fcnn_fp_enter/fcnn_fp_leave turn flush-to-zero and denormals-are-zero on for
// fcnn's work on the calling thread and put the caller's mode back; every OpenMP region of the
// kernels does the same on each of its threads (FCNN_PARALLEL_FP_ENTER/LEAVE), so no thread
// returns to Python or to another library with the mode changed.
#include <pthread.h>
#include <stdatomic.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#define FCNN_HAVE_MXCSR 1
#endif

#include "cblas.h"
#include "kernels.h"

// 0 until fcnn_set_threads: then OpenMP's default decides.
static atomic_int requested_threads = 0;

static int clamp_threads(long long count) {
    return count < 1 ? 1 : count > FCNN_MAX_THREADS ? FCNN_MAX_THREADS : (int)count;
}

int fcnn_get_threads(void) {
    int requested = atomic_load_explicit(&requested_threads, memory_order_relaxed);
    if (requested > 0) return requested;
#ifdef _OPENMP
    return clamp_threads(omp_get_max_threads());
#else
    return 1;
#endif
}

// Fused calls in flight, and the BLAS count to restore when the last one ends.
static pthread_mutex_t blas_lock = PTHREAD_MUTEX_INITIALIZER;
static int blas_scopes = 0, blas_saved_threads = 1;

void fcnn_set_threads(long long count) {
    int threads = clamp_threads(count);
    atomic_store_explicit(&requested_threads, threads, memory_order_relaxed);
    pthread_mutex_lock(&blas_lock);
    if (blas_scopes > 0) {
        blas_saved_threads = threads;  // applied when the fused calls in flight end
    } else {
        scipy_openblas_set_num_threads(threads);
    }
    pthread_mutex_unlock(&blas_lock);
}

void fcnn_blas_scope_enter(void) {
    pthread_mutex_lock(&blas_lock);
    if (blas_scopes++ == 0) {
        blas_saved_threads = scipy_openblas_get_num_threads();
        if (blas_saved_threads != 1) scipy_openblas_set_num_threads(1);
    }
    pthread_mutex_unlock(&blas_lock);
}

void fcnn_blas_scope_leave(void) {
    pthread_mutex_lock(&blas_lock);
    if (--blas_scopes == 0 && blas_saved_threads != 1) {
        scipy_openblas_set_num_threads(blas_saved_threads);
    }
    pthread_mutex_unlock(&blas_lock);
}

int fcnn_blas_threads(void) { return scipy_openblas_get_num_threads(); }

int fcnn_thread_index(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static atomic_int forced_vector_bytes = 0;

int fcnn_force_vector_bytes(int bytes) { return atomic_exchange(&forced_vector_bytes, bytes); }

int fcnn_forced_vector_bytes(void) { return atomic_load(&forced_vector_bytes); }

int fcnn_vector_bytes(void) {
    const int forced = fcnn_forced_vector_bytes();
    if (forced != 0) return forced;
#if defined(FCNN_NO_CLONES) && defined(__AVX512F__)
    return 64;
#elif defined(FCNN_NO_CLONES) && defined(__AVX2__) && defined(__FMA__)
    return 32;
#elif defined(FCNN_NO_CLONES)
    return 16;
#elif defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
    static int bytes = 0;  // a benign race: every thread computes the same answer
    if (bytes == 0) {
        __builtin_cpu_init();
        bytes = __builtin_cpu_supports("avx512f")     ? 64
                : __builtin_cpu_supports("x86-64-v3") ? 32
                                                      : 16;
    }
    return bytes;
#else
    return 32;
#endif
}

// ----------------------------------------------------------------------------
// flush-to-zero and denormals-are-zero

// MXCSR bits: FTZ (bit 15) flushes subnormal results, DAZ (bit 6) reads subnormal inputs as 0.
#define FCNN_MXCSR_FTZ_DAZ 0x8040u

unsigned fcnn_fp_enter(void) {
#ifdef FCNN_HAVE_MXCSR
    unsigned saved = _mm_getcsr();
    _mm_setcsr(saved | FCNN_MXCSR_FTZ_DAZ);
    return saved;
#else
    return 0;
#endif
}

void fcnn_fp_leave(unsigned saved) {
#ifdef FCNN_HAVE_MXCSR
    _mm_setcsr(saved);
#else
    (void)saved;
#endif
}
