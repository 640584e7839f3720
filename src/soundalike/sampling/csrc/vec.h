// 512-bit vectors of float / double for the products (two 256-bit halves, or four 128-bit quarters, where the
// CPU has no 512-bit registers: the compiler splits them), and the loads that widen stored weights to them.
// What depends on the instruction set sits in one header per set, chosen here (vec_avx512.h, vec_avx2.h, or
// the portable vec_generic.h); each defines widen_bf16(p) and widen_int8(p): 16 weights -> Vec<float>::type
// (and vec_avx2.h the 8-weight HalfLoad<float, ...> of the block-sparse products).
#pragma once
#include <cstdint>
#include <cstring>

template <typename T> struct Vec;
template <> struct Vec<float> { typedef float type __attribute__((vector_size(64))); };
template <> struct Vec<double> { typedef double type __attribute__((vector_size(64))); };

// Unaligned loads through memcpy.
template <typename T>
inline typename Vec<T>::type load(const T* p) {
    typename Vec<T>::type v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

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
#else
#include "vec_generic.h"
#endif

// One stored weight as T (the scalar tails).
template <typename T> inline T scalar(T w) { return w; }
template <typename T> inline T scalar(bf16 w) { return (T)widen(w); }
template <typename T> inline T scalar(int8_t w) { return (T)w; }

// A vector of N = 64 / sizeof(T) stored weights as T.
template <typename T> inline typename Vec<T>::type loadw(const T* p) { return load(p); }
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

// Sum of the lanes of a + b, by halving (a fixed order; a few vector adds instead of a scalar chain).
template <typename T>
inline T hsum(typename Vec<T>::type a, typename Vec<T>::type b) {
    constexpr int N = 64 / sizeof(T);
    const typename Vec<T>::type s = a + b;
    T buf[N];
    std::memcpy(buf, &s, sizeof(s));
    for (int w = N / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) buf[l] += buf[l + w];
    return buf[0];
}
