// Widening loads with AVX2 (included by vec.h only): where there are no 512-bit registers, each half of the
// 16 weights widened in two instructions, instead of the compiler's lane-by-lane conversion of the generic
// version (int8: 45 cycles per 16 weights on a 2-core AMD EPYC without AVX-512; see docs/MEASUREMENTS.md).
#pragma once
#include <immintrin.h>

inline Vec<float>::type join(__m256 lo, __m256 hi) {
    Vec<float>::type v;
    std::memcpy(&v, &lo, sizeof(lo));
    std::memcpy((char*)&v + sizeof(lo), &hi, sizeof(hi));
    return v;
}

inline Vec<float>::type widen_bf16(const bf16* p) {
    const __m128i lo = _mm_loadu_si128((const __m128i*)p), hi = _mm_loadu_si128((const __m128i*)p + 1);
    return join(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(lo), 16)),
                _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(hi), 16)));
}

inline Vec<float>::type widen_int8(const int8_t* p) {
    const __m128i q = _mm_loadu_si128((const __m128i*)p);
    return join(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)),
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8))));
}

// The block-sparse products' 8 weights (loadh in vec.h).
template <>
struct HalfLoad<float, int8_t> {
    static Half<float>::type load(const int8_t* p) {
        return (Half<float>::type)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)p)));
    }
};
template <>
struct HalfLoad<float, bf16> {
    static Half<float>::type load(const bf16* p) {
        const __m256i u = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p)), 16);
        return (Half<float>::type)_mm256_castsi256_ps(u);
    }
};
