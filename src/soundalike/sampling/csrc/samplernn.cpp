// SampleRNN's generation loop: one call draws a whole top frame for all streams (sl_samplernn_top_frame).
// In the order of the torch loop in samplernn.py: per bottom frame, every frame tier whose frame starts
// there (`tier_step`: input projection, GRU / LSTM layers with PyTorch's cell equations, skip projection,
// upsampling), then the frame's samples (`mlp_frame`): per sample, gather and sum `context` rows of the
// folded input tables (a row per digit of each level), add the tier's conditioning, run the hidden layer
// and the output head (head.h), which draws the sample straight into the history it reads from. In Python that is ~10 dispatches per sample; here one call per
// top frame.
#include <cmath>
#include <cstring>
#include <mutex>

#include "gemv.h"
#include "head.h"
#include "soundalike.h"
#include "team.h"
#include "vec.h"

namespace {

// Scratch of mlp_frame: h, h2 (B, D) and the head's scratch of T, then D ints of nonzero indices.
template <typename T>
int64_t mlp_work_bytes(const sl_head& h, int B, int D) {
    return (int64_t)sizeof(T) * (2 * (int64_t)B * D + head::work_elements(h, B)) + (int64_t)sizeof(int) * D;
}

// Scratch of tier_step: grid (B, F), x (B, D), two gate sets (B, G) and every layer's output (B, L * D).
template <typename T>
int64_t tier_work_bytes(const sl_tier& tier, int B, int D) {
    const int G = (tier.lstm ? 4 : 3) * D;
    return (int64_t)sizeof(T) * B * (tier.frame + D + 2 * G + tier.n_layers * D);
}

template <typename T>
int64_t work_bytes(const sl_samplernn& m, int B) {
    int64_t most = mlp_work_bytes<T>(m.head, B, m.dim);
    for (int k = 0; k < m.n_tiers; k++) {
        const int64_t t = tier_work_bytes<T>(m.tiers[k], B, m.dim);
        most = t > most ? t : most;
    }
    return most;
}

// One bottom frame of `n` samples for every stream (streams s from its frame's first sample), conditioned
// by cond (B, n, D) with stream stride cond_sb. With m.sparse the MLP runs per stream on the transposed
// weights skipping zero inputs (those it has: a block-sparse matrix has none and skips its zero blocks); otherwise on all streams at once (better from a few streams up: each weight
// row is then read once for every stream).
template <typename T, typename W_t>
void mlp_frame(const sl_samplernn& m, const sl_streams& s, int n, const T* cond, int64_t cond_sb, void* work) {
    const int B = s.batch, C = n, D = m.dim, rows = m.digits * m.radix;
    const T* tables = (const T*)m.tables;
    const T* b1 = (const T*)m.hidden.bias;
    T* h = (T*)work;               // (B, D)
    T* h2 = h + B * D;             // (B, D): the head's features
    T* hw = h2 + B * D;            // the head's scratch
    int* nz = (int*)(hw + head::work_elements(m.head, B));  // (D,)
    // The input layer: rows of the tables gathered from memory (counted 4x in splitting it between threads).
    const int gather_parts = team::parts(4 * (int64_t)B * C * D, D / 64);
    for (int j = 0; j < n; j++) {
        team::run([&](int t) {
            const int d0 = team::begin(D, 16, t, gather_parts), d1 = team::begin(D, 16, t + 1, gather_parts);
            for (int b = 0; b < B; b++) {
                const int64_t* prev = s.seq + b * s.seq_stride + s.pos + j - C;
                T* hb = h + (int64_t)b * D;
                for (int p = 0; p < C; p++)
                    head::embed_rows(tables + (int64_t)p * rows * D, prev[p], m.digits, m.radix, D, hb, d0, d1,
                                     p > 0);
                const T* c = cond + b * cond_sb + (int64_t)j * D;
                for (int d = d0; d < d1; d++) {
                    const T v = hb[d] + c[d];
                    hb[d] = v > 0 ? v : 0;
                }
            }
        }, gather_parts);
        if (m.sparse && m.hidden_t.data)
            for (int b = 0; b < B; b++)
                gemv_sparse<T, W_t>(m.hidden_t, b1, h + (int64_t)b * D, h2 + (int64_t)b * D, true, nz);
        else
            gemv<T, W_t>(m.hidden.weight, b1, h, B, h2, true);
        head::draw<T, W_t>(m.head, s, j, h2, m.sparse, hw, nz);
    }
}

template <typename T> inline T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }

// Tier `tier` on the frame ending before s.pos for every stream, with PyTorch's GRU / LSTM cell equations;
// upper (B, D) with stream stride upper_sb: the conditioning from the tier above, or null for the top tier.
template <typename T, typename W_t>
void tier_step(const sl_tier& tier, int D, int half, const sl_streams& s, const T* upper, int64_t upper_sb,
               void* work) {
    const int B = s.batch, F = tier.frame, L = tier.n_layers, lstm = tier.lstm;
    const int G = (lstm ? 4 : 3) * D;
    T* grid = (T*)work;        // (B, F)
    T* x = grid + B * F;       // (B, D)
    T* gi = x + B * D;         // (B, G)
    T* gh = gi + B * G;        // (B, G)
    T* outs = gh + B * G;      // (B, L * D): every layer's output, for the skip projection
    const bool skip = tier.skip.weight.data != nullptr;
    for (int b = 0; b < B; b++)
        for (int f = 0; f < F; f++)
            grid[b * F + f] = ((T)s.seq[b * s.seq_stride + s.pos - F + f] - (T)half) / (T)half;
    gemv<T, W_t>(tier.input.weight, (const T*)tier.input.bias, grid, B, x, false);
    if (upper)
        for (int b = 0; b < B; b++)
            for (int d = 0; d < D; d++) x[b * D + d] += upper[b * upper_sb + d];
    const int64_t BD = (int64_t)B * D;
    T* state = (T*)tier.state;
    for (int l = 0; l < L; l++) {
        const sl_rnn_layer& layer = tier.layers[l];
        T* h = state + l * BD;
        T* c = state + (L + l) * BD;  // LSTM cell state
        gemv<T, W_t>(layer.ih.weight, (const T*)layer.ih.bias, x, B, gi, false);
        gemv<T, W_t>(layer.hh.weight, (const T*)layer.hh.bias, h, B, gh, false);
        // The cell, split between threads by units (a unit's ~5 exp / tanh counted as 32 multiply-adds).
        const int cell_parts = team::parts(32 * (int64_t)B * D, D / 16);
        team::run([&](int t) {
            const int d0 = team::begin(D, 16, t, cell_parts), d1 = team::begin(D, 16, t + 1, cell_parts);
            for (int b = 0; b < B; b++) {
                const T* a = gi + (int64_t)b * G;
                const T* e = gh + (int64_t)b * G;
                T* hb = h + (int64_t)b * D;
                if (lstm) {
                    T* cb = c + (int64_t)b * D;
                    for (int d = d0; d < d1; d++) {
                        const T in = sigmoid(a[d] + e[d]), fo = sigmoid(a[D + d] + e[D + d]);
                        const T g = std::tanh(a[2 * D + d] + e[2 * D + d]);
                        const T o = sigmoid(a[3 * D + d] + e[3 * D + d]);
                        cb[d] = fo * cb[d] + in * g;
                        hb[d] = o * std::tanh(cb[d]);
                    }
                } else {
                    for (int d = d0; d < d1; d++) {
                        const T r = sigmoid(a[d] + e[d]), z = sigmoid(a[D + d] + e[D + d]);
                        const T n = std::tanh(a[2 * D + d] + r * e[2 * D + d]);
                        hb[d] = n + z * (hb[d] - n);
                    }
                }
            }
        }, cell_parts);
        for (int b = 0; b < B; b++) {
            const T* hb = h + (int64_t)b * D;
            std::memcpy(x + (int64_t)b * D, hb, sizeof(T) * D);
            if (skip) std::memcpy(outs + ((int64_t)b * L + l) * D, hb, sizeof(T) * D);
        }
    }
    if (skip) gemv<T, W_t>(tier.skip.weight, (const T*)tier.skip.bias, outs, B, x, false);
    gemv<T, W_t>(tier.upsample.weight, (const T*)tier.upsample.bias, x, B, (T*)tier.cond, false);
}

template <typename T, typename W_t>
void top_frame(const sl_samplernn& m, const sl_streams& s, void* work) {
    const int n_tiers = m.n_tiers, D = m.dim, Q = m.q_levels, fs = m.tiers[0].frame, W = m.head.noise_width;
    const int P = m.head.n_params;
    const int hop = m.tiers[n_tiers - 1].frame;
    for (int t = 0; t < hop; t += fs) {
        sl_streams frame = s;  // the streams from this bottom frame's first sample
        frame.pos += t;
        frame.noise += (int64_t)t * W;
        if (s.logits) frame.logits = (T*)s.logits + (int64_t)t * P;
        for (int k = n_tiers - 1; k >= 0; k--) {
            const sl_tier& tier = m.tiers[k];
            if (t % tier.frame) continue;
            const T* upper = nullptr;
            int64_t upper_sb = 0;
            if (k + 1 < n_tiers) {
                const sl_tier& above = m.tiers[k + 1];
                upper = (const T*)above.cond + (t / tier.frame) % above.ratio * D;
                upper_sb = (int64_t)above.ratio * D;
            }
            tier_step<T, W_t>(tier, D, Q / 2, frame, upper, upper_sb, work);
        }
        mlp_frame<T, W_t>(m, frame, fs, (const T*)m.tiers[0].cond, (int64_t)m.tiers[0].ratio * D, work);
    }
}

}  // namespace

extern "C" int64_t sl_samplernn_work_bytes(const sl_samplernn* model, int32_t batch) {
    return model->dtype == SL_F64 ? work_bytes<double>(*model, batch) : work_bytes<float>(*model, batch);
}

extern "C" void sl_samplernn_top_frame(const sl_samplernn* model, const sl_streams* streams, void* work) {
    std::lock_guard<std::mutex> lock(team::calls());
    const bool f64 = model->dtype == SL_F64;
    switch (model->weights) {
    case SL_BF16:
        return f64 ? top_frame<double, bf16>(*model, *streams, work) : top_frame<float, bf16>(*model, *streams, work);
    case SL_INT8:
        return f64 ? top_frame<double, int8_t>(*model, *streams, work)
                   : top_frame<float, int8_t>(*model, *streams, work);
    default:
        return f64 ? top_frame<double, double>(*model, *streams, work)
                   : top_frame<float, float>(*model, *streams, work);
    }
}
