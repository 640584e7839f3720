// Widening loads with AVX-512 (included by vec.h only): one instruction each instead of the compiler's
// lane-by-lane conversion of the generic version.
#pragma once
#include <immintrin.h>

inline Vec<float>::type widen_bf16(const bf16* p) {
    const __m512i u = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16);
    return (Vec<float>::type)_mm512_castsi512_ps(u);
}

inline Vec<float>::type widen_int8(const int8_t* p) {
    return (Vec<float>::type)_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)p)));
}
