// The output head of both models (models/heads.py): a sample's features z -> the head's parameters -> the
// sample's level, by the randomness contract's rules (sampling/reference.py), written into the history.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gemv.h"
#include "soundalike.h"

namespace head {

constexpr int BYTE = 256;
constexpr double LOG_SCALE_MIN = -16.0;  // heads.LOG_SCALE_MIN

// Scratch of `draw` for B streams: the parameters (B, n_params), the fine input (B, dim) and logits (B, 256).
inline int64_t work_elements(const sl_head& h, int B) { return (int64_t)B * (h.n_params + h.dim + BYTE); }

// One stream's heard tilt (heads.heard_tilt) into h (n,): pull * min((amp[q] + e)^2, cap), e = decay * echo.
inline void heard_tilt(const float* amp, int n, float pull, float e, float cap, float* h) {
    for (int q = 0; q < n; q++) {
        const float d = amp[q] + e, sq = d * d;
        h[q] = pull * (sq < cap ? sq : cap);
    }
}

// Gumbel-max with temperature t, logit bias c and heard tilt h (NULL: none) and floor lf = log(min_p): with
// v[q] = float32(l[q]) / t + c[q] + h[q], argmax of v + g over the q with v[q] >= max v + lf, first index on
// ties (heads.pick). Rounded as torch rounds: the build does not fuse multiplies and adds.
template <typename T>
inline float tilted(const T* l, int q, float t, const float* c, const float* h) {
    float v = (float)l[q] / t;
    if (c) v = v + c[q];
    if (h) v = v + h[q];
    return v;
}

template <typename T>
inline int pick(const T* l, int n, float t, float lf, const float* g, const float* c = nullptr,
                const float* h = nullptr) {
    float thr = -INFINITY;
    if (lf != -INFINITY) {
        float top = tilted(l, 0, t, c, h);
        for (int q = 1; q < n; q++) {
            const float v = tilted(l, q, t, c, h);
            if (v > top) top = v;
        }
        thr = top + lf;
    }
    int best = -1;
    float bv = -INFINITY;
    for (int q = 0; q < n; q++) {
        const float v = tilted(l, q, t, c, h);
        if (v < thr) continue;
        const float w = v + g[q];
        if (best < 0 || w > bv) { bv = w; best = q; }
    }
    return best;
}

// The logistic mixture's sample (heads.Head.draw): component by `pick`, then the truncated logistic in double.
template <typename T>
inline int64_t mixture(const T* p, int K, int Q, float t, float lf, float tail, const float* g) {
    const int k = pick(p, K, t, lf, g);
    const double mu = (double)p[K + k];
    const double log_s = std::fmax((double)p[2 * K + k], LOG_SCALE_MIN);
    const double a = (double)tail;
    const double u = a + (1 - 2 * a) * (double)g[K];
    const double x = mu + std::exp(log_s) * (double)t * (std::log(u) - std::log1p(-u));
    const double level = std::nearbyint(x * (Q / 2.0)) + (double)(Q / 2);
    return (int64_t)(level < 0 ? 0 : level > Q - 1 ? Q - 1 : level);
}

// y (B, M.rows) = x (B, M.cols) M^T + bias, as one product for all streams, or with `sparse` per stream on the
// transposed matrix skipping zero inputs (nz: scratch of M.cols ints); a block-sparse M has no transposed copy
// (MT.data NULL) and always takes the first way.
template <typename T, typename W_t>
inline void product(const sl_linear& M, const sl_matrix& MT, const T* x, int B, T* y, bool sparse, int* nz) {
    const int R = M.weight.rows, C = M.weight.cols;
    if (!sparse || !MT.data) return gemv<T, W_t>(M.weight, (const T*)M.bias, x, B, y, false);
    for (int b = 0; b < B; b++)
        gemv_sparse<T, W_t>(MT, (const T*)M.bias, x + (int64_t)b * C, y + (int64_t)b * R, false, nz);
}

// Draw sample s.pos + j of every stream from its features z (B, dim); keeps the parameters in s.logits if
// given. work: work_elements(h, B) elements of T.
template <typename T, typename W_t>
void draw(const sl_head& h, const sl_streams& s, int j, const T* z, bool sparse, T* work, int* nz) {
    const int B = s.batch, P = h.n_params, D = h.dim, W = h.noise_width, Q = h.levels;
    T* params = work;            // (B, P)
    T* fin = params + B * P;     // (B, D)
    T* flg = fin + (int64_t)B * D;  // (B, 256)
    product<T, W_t>(h.params, h.params_t, z, B, params, sparse, nz);
    for (int b = 0; b < B; b++) {
        const T* p = params + (int64_t)b * P;
        const float* g = s.noise + b * s.noise_stride + (int64_t)j * W;
        const float t = s.temperature[b], lf = s.log_floor[b];
        int64_t level;
        if (h.kind == SL_SOFTMAX) {
            const float* c = s.bias ? s.bias + (int64_t)b * P : nullptr;
            if (s.pull) {
                thread_local std::vector<float> tilt;  // this stream's heard tilt, one vectorized pass
                tilt.resize(P);
                const float e = s.decay * s.echo[b];
                heard_tilt(s.amp, P, s.pull[b], e, s.cap, tilt.data());
                level = pick(p, P, t, lf, g, c, tilt.data());
                s.echo[b] = s.amp[level] + e;
            } else {
                level = pick(p, P, t, lf, g, c);
            }
        } else if (h.kind == SL_COARSE_FINE) {
            const int c = pick(p, P, t, lf, g);
            const T* e = (const T*)h.coarse_embedding + (int64_t)c * D;
            const T* zb = z + (int64_t)b * D;
            T* fb = fin + (int64_t)b * D;
            for (int d = 0; d < D; d++) {
                const T v = zb[d] + e[d];
                fb[d] = v > 0 ? v : 0;
            }
            level = (int64_t)c * BYTE;  // the fine byte is added below, once every stream's input is made
        } else {
            level = mixture(p, P / 3, Q, t, lf, s.tail[b], g);
        }
        s.seq[b * s.seq_stride + s.pos + j] = level;
        if (s.logits) std::memcpy((T*)s.logits + b * s.logits_stride + (int64_t)j * P, p, sizeof(T) * P);
    }
    if (h.kind != SL_COARSE_FINE) return;
    product<T, W_t>(h.fine, h.fine_t, fin, B, flg, sparse, nz);
    for (int b = 0; b < B; b++) {
        const float* g = s.noise + b * s.noise_stride + (int64_t)j * W + P;
        s.seq[b * s.seq_stride + s.pos + j] += pick(flg + (int64_t)b * BYTE, BYTE, s.temperature[b],
                                                    s.log_floor[b], g);
    }
}

// The input embedding of a level: the sum of its digits' rows (heads.input_digits) of `table`, each `n` wide:
// row k * radix + digit k of the level.
template <typename T>
inline void embed_rows(const T* table, int64_t level, int digits, int radix, int n, T* out, int d0, int d1,
                       bool add) {
    for (int k = 0; k < digits; k++) {
        const int64_t digit = digits == 1 ? level : k == 0 ? level / radix : level % radix;
        const T* row = table + ((int64_t)k * radix + digit) * n;
        if (add || k > 0)
            for (int d = d0; d < d1; d++) out[d] += row[d];
        else
            for (int d = d0; d < d1; d++) out[d] = row[d];
    }
}

}  // namespace head
