// Counter-based random numbers for work split across threads: the index-th number of a stream
// is a pure function of (key, index), so which thread draws it, and in which order, cannot
// change it. A run is bitwise reproducible for a seed whatever the thread count.
// fcnn/reference.py's random_key / random_uniform give the same numbers in NumPy.
//
// The mixer is splitmix64's finaliser (Steele, Lea and Flood, OOPSLA 2014): it passes BigCrush
// when fed a counter, which is all a sample's augmentation or a dropout mask needs.
#ifndef FCNN_RANDOM_H
#define FCNN_RANDOM_H
#include <stdint.h>

static inline uint64_t fcnn_mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// The key of stream `stream` (say, one per training step) under `seed`.
static inline uint64_t fcnn_random_key(uint64_t seed, uint64_t stream) {
    return fcnn_mix64(seed ^ fcnn_mix64(stream));
}

// The half of fcnn_random_bits that depends on the index alone: streams that all draw the
// same indices (one stream per image) can hash them once.
static inline uint64_t fcnn_random_index_hash(uint64_t index) {
    return fcnn_mix64(index + 0x632BE59BD9B4E019ull);
}

// 64 random bits: the index-th number of the stream `key`.
static inline uint64_t fcnn_random_bits(uint64_t key, uint64_t index) {
    return fcnn_mix64(key ^ fcnn_random_index_hash(index));
}

// A double uniform in [0, 1), on a grid of 2^-53: the top 53 of the 64 bits.
static inline double fcnn_random_uniform(uint64_t key, uint64_t index) {
    return (double)(fcnn_random_bits(key, index) >> 11) * 0x1.0p-53;
}

// fcnn_random_bits(key, index), given hash = fcnn_random_index_hash(index).
static inline uint64_t fcnn_random_bits_hashed(uint64_t key, uint64_t hash) {
    return fcnn_mix64(key ^ hash);
}

#endif
