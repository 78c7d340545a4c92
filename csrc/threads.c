// Threads and the floating-point environment of fcnn's own work.
//
// Thread count: one process-wide setting that every kernel reads (fcnn_get_threads), so
// fcnn.set_num_threads called from any Python thread takes effect for the next call on
// every thread; omp_set_num_threads would only change the calling thread's setting. Until it
// is set, the count follows OpenMP's default of the calling thread (OMP_NUM_THREADS, or a
// threadpoolctl limit), clamped to [1, FCNN_MAX_THREADS].
//
// The BLAS is kept at one thread: fcnn's threads are OpenMP's, and its matrix products are
// split across them by column (fcnn_gemm in linear.c), each slice a one-thread BLAS call. No
// call ever saves and restores the BLAS setting, so concurrent calls cannot leave it wrong.
//
// Subnormals: fcnn_fp_enter/fcnn_fp_leave turn flush-to-zero and denormals-are-zero on for
// fcnn's work on the calling thread and put the caller's mode back; every OpenMP region of the
// kernels does the same on each of its threads (FCNN_PARALLEL_FP_ENTER/LEAVE), so no thread
// returns to Python or to another library with the mode changed.
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

void fcnn_set_threads(long long count) {
    atomic_store_explicit(&requested_threads, clamp_threads(count), memory_order_relaxed);
    fcnn_blas_single_thread();
}

void fcnn_blas_single_thread(void) {
    // Only written when it differs (a threadpoolctl limit may have raised it): every writer
    // writes the same value, so concurrent callers cannot disagree.
    if (scipy_openblas_get_num_threads() != 1) scipy_openblas_set_num_threads(1);
}

int fcnn_thread_index(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
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
