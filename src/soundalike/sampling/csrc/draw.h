// Drawing a sample from logits by the randomness contract, for both models.
#pragma once
#include <cstdint>
#include <cstring>

#include "soundalike.h"

// Sample pos + j of each stream from its logits lg (batch, Q) by the Gumbel-max rule,
// argmax(float32(logits) / temperature + noise), first index on ties; optionally keep the logits.
template <typename T>
inline void draw(const sl_streams& s, int Q, const T* lg, int j) {
    for (int b = 0; b < s.batch; b++) {
        const T* l = lg + (int64_t)b * Q;
        const float* g = s.noise + b * s.noise_stride + (int64_t)j * Q;
        const float t = s.temperature[b];
        int best = 0;
        float bv = (float)l[0] / t + g[0];
        for (int q = 1; q < Q; q++) {
            const float v = (float)l[q] / t + g[q];
            if (v > bv) { bv = v; best = q; }
        }
        s.seq[b * s.seq_stride + s.pos + j] = best;
        if (s.logits)
            std::memcpy((T*)s.logits + b * s.logits_stride + (int64_t)j * Q, l, sizeof(T) * Q);
    }
}
