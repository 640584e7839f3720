// The products' vectors: 512-bit ones (Vec) held in one register each with AVX-512, as two 256-bit halves (Half)
// elsewhere (Reg below), and the loads that widen stored weights to them. What depends on the instruction set
// sits in one header per set, chosen here: vec_avx512.h (widen_bf16(p) and widen_int8(p): 16 weights ->
// Vec<float>::type) or vec_avx2.h (the 8-weight HalfLoad<float, ...>); any other CPU takes the portable
// HalfLoad of this file.
#pragma once
#include <cstdint>
#include <cstring>

template <typename T> struct Vec;
template <> struct Vec<float> { typedef float type __attribute__((vector_size(64))); };
template <> struct Vec<double> { typedef double type __attribute__((vector_size(64))); };

struct bf16 { uint16_t bits; };

inline float widen(bf16 w) {
    const uint32_t u = (uint32_t)w.bits << 16;
    float f;
    std::memcpy(&f, &u, sizeof(f));
    return f;
}

// 256-bit vectors: the widest every x86-64 CPU with AVX2 holds in one register. The block-sparse products keep
// their sums in these, which the compiler leaves in registers, where 512-bit ones are emulated through the stack
// on CPUs without AVX-512 (3x slower there).
template <typename T> struct Half;
template <> struct Half<float> { typedef float type __attribute__((vector_size(32))); };
template <> struct Half<double> { typedef double type __attribute__((vector_size(32))); };

// 32 / sizeof(T) stored weights as T: converted lane by lane (one instruction each way on x86 with AVX2), or
// for bfloat16 shifted into the top half of a float32 first.
template <typename T, typename W_t>
struct HalfLoad {
    static typename Half<T>::type load(const W_t* p) {
        typedef W_t stored __attribute__((vector_size(32 / sizeof(T) * sizeof(W_t))));
        stored w;
        std::memcpy(&w, p, sizeof(w));
        return __builtin_convertvector(w, typename Half<T>::type);
    }
};
#if !defined(__AVX2__) || defined(__AVX512F__)
template <>
struct HalfLoad<float, bf16> {
    static Half<float>::type load(const bf16* p) {
        typedef uint16_t u16x8 __attribute__((vector_size(16)));
        typedef uint32_t u32x8 __attribute__((vector_size(32)));
        u16x8 h;
        std::memcpy(&h, p, sizeof(h));
        const u32x8 u = __builtin_convertvector(h, u32x8) << 16;
        Half<float>::type f;
        std::memcpy(&f, &u, sizeof(f));
        return f;
    }
};
#endif
template <>
struct HalfLoad<double, bf16> {
    static Half<double>::type load(const bf16* p) {
        typedef uint16_t u16x4 __attribute__((vector_size(8)));
        typedef uint32_t u32x4 __attribute__((vector_size(16)));
        typedef float f32x4 __attribute__((vector_size(16)));
        u16x4 h;
        std::memcpy(&h, p, sizeof(h));
        const u32x4 u = __builtin_convertvector(h, u32x4) << 16;
        f32x4 f;
        std::memcpy(&f, &u, sizeof(f));
        return __builtin_convertvector(f, Half<double>::type);
    }
};
template <typename T, typename W_t>
inline typename Half<T>::type loadh(const W_t* p) { return HalfLoad<T, W_t>::load(p); }

#if defined(__AVX512F__)
#include "vec_avx512.h"
#elif defined(__AVX2__)
#include "vec_avx2.h"
#endif

// The products' registers: a 512-bit vector of 64 / sizeof(T) lanes is held as PARTS registers of Reg<T> (one
// with AVX-512; two 256-bit halves elsewhere, named as such: the compiler keeps named 256-bit variables in
// registers, where it splits 512-bit ones through the stack on CPUs without AVX-512). Lane for lane the sums
// are the same either way, so the results do not depend on the instruction set. gemv_rows sums ROWS_AT_ONCE
// rows at a time (two 512-bit sums each), the input-sparse products up to WIDEST_PASS registers of outputs:
// what fits in 32 registers (AVX-512) or 16 (AVX2).
#if defined(__AVX512F__)
template <typename T> using Reg = typename Vec<T>::type;
constexpr int PARTS = 1, ROWS_AT_ONCE = 4, WIDEST_PASS = 16;
#else
template <typename T> using Reg = typename Half<T>::type;
constexpr int PARTS = 2, ROWS_AT_ONCE = 2, WIDEST_PASS = 12;
#endif

// One stored weight as T (the scalar tails).
template <typename T> inline T scalar(T w) { return w; }
template <typename T> inline T scalar(bf16 w) { return (T)widen(w); }
template <typename T> inline T scalar(int8_t w) { return (T)w; }

#if defined(__AVX512F__)
// A vector of N = 64 / sizeof(T) stored weights as T (unaligned loads through memcpy).
template <typename T> inline typename Vec<T>::type loadw(const T* p) {
    typename Vec<T>::type v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}
template <typename T> inline typename Vec<T>::type loadw(const bf16* p);
template <typename T> inline typename Vec<T>::type loadw(const int8_t* p);
template <> inline Vec<float>::type loadw<float>(const bf16* p) { return widen_bf16(p); }
template <> inline Vec<float>::type loadw<float>(const int8_t* p) { return widen_int8(p); }
template <> inline Vec<double>::type loadw<double>(const int8_t* p) {
    typedef int8_t i8x8 __attribute__((vector_size(8)));
    i8x8 q;
    std::memcpy(&q, p, sizeof(q));
    return __builtin_convertvector(q, Vec<double>::type);
}
template <> inline Vec<double>::type loadw<double>(const bf16* p) {
    typedef float f32x8 __attribute__((vector_size(32)));
    uint32_t u[8];
    for (int l = 0; l < 8; l++) u[l] = (uint32_t)p[l].bits << 16;
    f32x8 f;
    std::memcpy(&f, u, sizeof(f));
    return __builtin_convertvector(f, Vec<double>::type);
}
#endif

// acc + w * x in one rounding where the CPU has FMA (every x86-64 CPU with AVX2), else in two. Explicit, because
// the compiler's contraction of a * b + c differs between inlined copies of the same loop (a product split
// between threads must give the same bits as on one).
template <typename T>
inline Reg<T> fmadd(Reg<T> acc, Reg<T> w, Reg<T> x) {
#if defined(__AVX512F__)
    if constexpr (sizeof(T) == 4) return (Reg<T>)_mm512_fmadd_ps((__m512)w, (__m512)x, (__m512)acc);
    else return (Reg<T>)_mm512_fmadd_pd((__m512d)w, (__m512d)x, (__m512d)acc);
#elif defined(__FMA__) && defined(__AVX2__)
    if constexpr (sizeof(T) == 4) return (Reg<T>)_mm256_fmadd_ps((__m256)w, (__m256)x, (__m256)acc);
    else return (Reg<T>)_mm256_fmadd_pd((__m256d)w, (__m256d)x, (__m256d)acc);
#else
    return acc + w * x;
#endif
}

// One register's worth of stored weights as T (Reg above).
template <typename T, typename W_t>
inline Reg<T> loadr(const W_t* p) {
#if defined(__AVX512F__)
    return loadw<T>(p);
#else
    return loadh<T>(p);
#endif
}

// Sum of the lanes of the 512-bit vector a + c, each given as its PARTS registers, by halving (a fixed order;
// a few vector adds instead of a scalar chain).
template <typename T>
inline T hsum(const Reg<T>* a, const Reg<T>* c) {
    constexpr int N = 64 / sizeof(T);
    T buf[N];
    for (int p = 0; p < PARTS; p++) {
        const Reg<T> s = a[p] + c[p];
        std::memcpy(buf + p * (N / PARTS), &s, sizeof(s));
    }
    for (int w = N / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) buf[l] += buf[l + w];
    return buf[0];
}
