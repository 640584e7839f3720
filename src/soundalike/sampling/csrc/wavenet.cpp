// The WaveNet sample loop: `n` samples of every stream per call, one step per layer each (sl_wavenet_steps).
// Per sample: the newest input's embedding (a row per digit of the level, summed), then per layer the dilated convolution over its taps (the past
// ones read from the ring buffer of wavenet.py, the newest one the layer's input), the gated unit, the ring
// write and the residual update; then the skip projection, the hidden layer and the output head (head.h),
// which draws the sample straight
// into the history the next step reads. In torch that is ~7 dispatches per layer per sample; here one call
// per `n` samples. Layer l's queue is ring slots [offset, offset + (K - 1) * dilation); its input from
// j * dilation steps ago sits in slot offset + (step - j * dilation) mod size.
#include <cmath>
#include <cstring>
#include <mutex>

#include "gemv.h"
#include "head.h"
#include "soundalike.h"
#include "team.h"

namespace {

struct Dims {
    int L, K, R, D, S, O, Q;
};

Dims dims(const sl_wavenet& m) {
    return {m.n_layers, m.kernel_size, m.residual, m.dilation_channels, m.skip.weight.rows,
            m.hidden.weight.rows, m.q_levels};
}

// Scratch: h (B, R), the taps (B, K * R), a (B, 2D), the layer's gated output (B, D), every layer's (B, L * D),
// r (B, R), skip (B, S), hidden (B, O), the head's scratch, R zeros (the residual projection's bias), and O
// ints (unused: the head runs dense).
int64_t work_elements(const sl_wavenet& m, const Dims& d, int B) {
    return (int64_t)B * (d.R + d.K * d.R + 2 * d.D + d.D + d.L * d.D + d.R + d.S + d.O)
           + head::work_elements(m.head, B) + d.R + d.O;
}

template <typename T>
void steps(const sl_wavenet& m, const sl_streams& s, int n, int64_t step, void* work) {
    const Dims dm = dims(m);
    const int B = s.batch, L = dm.L, K = dm.K, R = dm.R, D = dm.D, S = dm.S, O = dm.O;
    const int KR = K * R, LD = L * D;
    const T* emb = (const T*)m.embedding;
    T* ring = (T*)m.ring;
    T* h = (T*)work;              // (B, R): the current layer's input
    T* xin = h + B * R;           // (B, K*R): its taps
    T* a = xin + B * KR;          // (B, 2D)
    T* zl = a + B * 2 * D;        // (B, D): the current layer's gated output
    T* z = zl + B * D;            // (B, L*D): every layer's
    T* r = z + B * LD;            // (B, R)
    T* sk = r + B * R;            // (B, S)
    T* hid = sk + B * S;          // (B, O)
    T* hw = hid + B * O;          // the head's scratch
    T* zero = hw + head::work_elements(m.head, B);  // (R,)
    int* nz = (int*)(zero + R);
    for (int i = 0; i < R; i++) zero[i] = 0;
    for (int j = 0; j < n; j++, step++) {
        for (int b = 0; b < B; b++)
            head::embed_rows(emb, s.seq[b * s.seq_stride + s.pos + j - 1], m.digits, m.radix, R, h + (int64_t)b * R,
                             0, R, false);
        for (int l = 0; l < L; l++) {
            const sl_wavenet_layer& layer = m.layers[l];
            const int64_t size = (int64_t)(K - 1) * layer.dilation;
            for (int t = 0; t < K - 1; t++) {
                const int64_t lag = (int64_t)(K - 1 - t) * layer.dilation;
                const int64_t slot = layer.offset + ((step - lag) % size + size) % size;
                for (int b = 0; b < B; b++)
                    std::memcpy(xin + (int64_t)b * KR + t * R, ring + (slot * B + b) * R, sizeof(T) * R);
            }
            const int64_t wslot = layer.offset + step % size;
            for (int b = 0; b < B; b++) {
                std::memcpy(xin + (int64_t)b * KR + (K - 1) * R, h + (int64_t)b * R, sizeof(T) * R);
                std::memcpy(ring + (wslot * B + b) * R, h + (int64_t)b * R, sizeof(T) * R);
            }
            gemv<T, T>(layer.conv.weight, (const T*)layer.conv.bias, xin, B, a, false);
            for (int b = 0; b < B; b++) {
                const T* ab = a + (int64_t)b * 2 * D;
                T* zb = zl + (int64_t)b * D;
                for (int d = 0; d < D; d++) zb[d] = std::tanh(ab[d]) / (T(1) + std::exp(-ab[D + d]));
                std::memcpy(z + (int64_t)b * LD + (int64_t)l * D, zb, sizeof(T) * D);
            }
            if (l + 1 < L) {
                gemv<T, T>(layer.residual, zero, zl, B, r, false);
                for (int64_t i = 0; i < (int64_t)B * R; i++) h[i] += r[i];
            }
        }
        gemv<T, T>(m.skip.weight, (const T*)m.skip.bias, z, B, sk, true);
        gemv<T, T>(m.hidden.weight, (const T*)m.hidden.bias, sk, B, hid, true);
        head::draw<T, T>(m.head, s, j, hid, false, hw, nz);
    }
}

}  // namespace

extern "C" int64_t sl_wavenet_work_bytes(const sl_wavenet* model, int32_t batch) {
    return work_elements(*model, dims(*model), batch) * (model->dtype == SL_F64 ? sizeof(double) : sizeof(float));
}

extern "C" void sl_wavenet_steps(const sl_wavenet* model, const sl_streams* streams, int32_t n, int64_t step,
                                 void* work) {
    std::lock_guard<std::mutex> lock(team::calls());
    if (model->dtype == SL_F64)
        steps<double>(*model, *streams, n, step, work);
    else
        steps<float>(*model, *streams, n, step, work);
}
