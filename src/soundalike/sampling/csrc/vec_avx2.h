// Widening loads with AVX2 (included by vec.h only): 8 weights widened in two instructions, instead of the
// compiler's lane-by-lane conversion of the portable version (int8: 45 cycles per 16 weights on a 2-core AMD
// EPYC without AVX-512; see docs/MEASUREMENTS.md).
#pragma once
#include <immintrin.h>

// The products' 8 weights (loadh, loadr in vec.h).
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
