// Widening loads in portable vector extensions (included by vec.h only): any CPU, any instruction set.
#pragma once

inline Vec<float>::type widen_bf16(const bf16* p) {
    typedef uint16_t u16x16 __attribute__((vector_size(32)));
    typedef uint32_t u32x16 __attribute__((vector_size(64)));
    u16x16 h;
    std::memcpy(&h, p, sizeof(h));
    const u32x16 u = __builtin_convertvector(h, u32x16) << 16;
    Vec<float>::type v;
    std::memcpy(&v, &u, sizeof(v));
    return v;
}

inline Vec<float>::type widen_int8(const int8_t* p) {
    typedef int8_t i8x16 __attribute__((vector_size(16)));
    i8x16 q;
    std::memcpy(&q, p, sizeof(q));
    return __builtin_convertvector(q, Vec<float>::type);
}
