// 512-bit vectors of float / double for the products (two 256-bit halves, or four 128-bit quarters, where the
// CPU has no 512-bit registers: the compiler splits them), and the loads that widen stored weights to them.
// What depends on the instruction set sits in one header per set, chosen here (vec_avx512.h, or the
// portable vec_generic.h); each defines widen_bf16(p) and widen_int8(p): 16 weights -> Vec<float>::type.
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

#if defined(__AVX512F__)
#include "vec_avx512.h"
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
