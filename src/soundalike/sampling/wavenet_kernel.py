"""The WaveNet sample loop on the CPU in C++: `n` samples of B streams per call, one step per layer each.

Per sample: the newest input's embedding, then per layer the dilated convolution over its taps (the past
ones read from the ring buffer of `wavenet.py`, the newest one the layer's input), the gated unit, the ring
write and the residual update; then the skip projection, the output head and the Gumbel-max draw of the
randomness contract (`argmax(float32(logits) / temperature + noise)`, first index on ties), written straight
into the history the next step reads. In torch that is ~7 dispatches per layer per sample; here it is one call
per `hop` samples.

The source reuses the matrix-vector product `gemv` of the SampleRNN kernel (`kernel.SOURCE`, prepended) and
is compiled and loaded the same way, by `compiler.py`. Without a compiler `load()` returns None and the
stepper uses torch ops.
"""

from __future__ import annotations

import ctypes

from . import compiler, kernel

SOURCE = kernel.SOURCE + r"""
// WaveNet: see wavenet_kernel.py. Weights row-major: emb (Q, R); wc (L, 2D, K*R), taps oldest first;
// bc (L, 2D); wr (L - 1, R, D); ws (S, L*D); wh (O, S); wo (Q, O). ring (slots, B, R); layer l's queue is
// slots [off[l], off[l] + (K - 1) * dil[l]), its input from j * dil steps ago in slot off + (step - j*dil) mod size.
template <typename T>
static void wavenet_steps(int B, int n, int L, int K, int R, int D, int S, int O, int Q, const int* dil,
                          const int64_t* off, const T* emb, const T* wc, const T* bc, const T* wr, const T* ws,
                          const T* bs, const T* wh, const T* bh, const T* wo, const T* bo, T* ring,
                          int64_t step, int64_t* seq, int64_t seq_sb, int64_t pos, const float* noise,
                          int64_t noise_sb, const float* temp, T* logits_out, int64_t logits_sb, T* work) {
    const int KR = K * R, LD = L * D;
    T* h = work;                  // (B, R): the current layer's input
    T* xin = h + B * R;           // (B, K*R): its taps
    T* a = xin + B * KR;          // (B, 2D)
    T* zl = a + B * 2 * D;        // (B, D): the current layer's gated output
    T* z = zl + B * D;            // (B, L*D): every layer's
    T* r = z + B * LD;            // (B, R)
    T* sk = r + B * R;            // (B, S)
    T* hid = sk + B * S;          // (B, O)
    T* lg = hid + B * O;          // (B, Q)
    T* zero = lg + B * Q;         // (R,)
    for (int i = 0; i < R; i++) zero[i] = 0;
    for (int j = 0; j < n; j++, step++) {
        for (int b = 0; b < B; b++)
            std::memcpy(h + (int64_t)b * R, emb + seq[b * seq_sb + pos + j - 1] * R, sizeof(T) * R);
        for (int l = 0; l < L; l++) {
            const int64_t size = (int64_t)(K - 1) * dil[l];
            for (int t = 0; t < K - 1; t++) {
                const int64_t lag = (int64_t)(K - 1 - t) * dil[l];
                const int64_t slot = off[l] + ((step - lag) % size + size) % size;
                for (int b = 0; b < B; b++)
                    std::memcpy(xin + (int64_t)b * KR + t * R, ring + (slot * B + b) * R, sizeof(T) * R);
            }
            const int64_t wslot = off[l] + step % size;
            for (int b = 0; b < B; b++) {
                std::memcpy(xin + (int64_t)b * KR + (K - 1) * R, h + (int64_t)b * R, sizeof(T) * R);
                std::memcpy(ring + (wslot * B + b) * R, h + (int64_t)b * R, sizeof(T) * R);
            }
            gemv<T>(wc + (int64_t)l * 2 * D * KR, bc + (int64_t)l * 2 * D, xin, B, 2 * D, KR, a, false);
            for (int b = 0; b < B; b++) {
                const T* ab = a + (int64_t)b * 2 * D;
                T* zb = zl + (int64_t)b * D;
                for (int d = 0; d < D; d++) zb[d] = std::tanh(ab[d]) / (T(1) + std::exp(-ab[D + d]));
                std::memcpy(z + (int64_t)b * LD + (int64_t)l * D, zb, sizeof(T) * D);
            }
            if (l + 1 < L) {
                gemv<T>(wr + (int64_t)l * R * D, zero, zl, B, R, D, r, false);
                for (int64_t i = 0; i < (int64_t)B * R; i++) h[i] += r[i];
            }
        }
        gemv<T>(ws, bs, z, B, S, LD, sk, true);
        gemv<T>(wh, bh, sk, B, O, S, hid, true);
        gemv<T>(wo, bo, hid, B, Q, O, lg, false);
        draw<T>(B, Q, lg, noise, noise_sb, temp, j, seq, seq_sb, pos, logits_out, logits_sb);
    }
}

#define WAVENET_EXPORT(NAME, T)                                                                            \
extern "C" void NAME(int B, int n, int L, int K, int R, int D, int S, int O, int Q, const int* dil,        \
                     const int64_t* off, const T* emb, const T* wc, const T* bc, const T* wr, const T* ws,  \
                     const T* bs, const T* wh, const T* bh, const T* wo, const T* bo, T* ring,              \
                     int64_t step, int64_t* seq, int64_t seq_sb, int64_t pos, const float* noise,           \
                     int64_t noise_sb, const float* temp, T* logits_out, int64_t logits_sb, T* work) {      \
    std::lock_guard<std::mutex> lock(team::calls);                                                          \
    wavenet_steps<T>(B, n, L, K, R, D, S, O, Q, dil, off, emb, wc, bc, wr, ws, bs, wh, bh, wo, bo, ring,    \
                     step, seq, seq_sb, pos, noise, noise_sb, temp, logits_out, logits_sb, work);           \
}
WAVENET_EXPORT(wavenet_f32, float)
WAVENET_EXPORT(wavenet_f64, double)
"""

_loaded: dict[str, ctypes.CDLL | None] = {}


def work_size(B: int, L: int, K: int, R: int, D: int, S: int, O: int, Q: int) -> int:
    """Elements of the kernel's scratch buffer."""
    return B * (R + K * R + 2 * D + D + L * D + R + S + O + Q) + R


def load() -> ctypes.CDLL | None:
    """The compiled WaveNet kernel, or None (with one warning) without a working C++ compiler.

    SOUNDALIKE_KERNEL=numpy (the SampleRNN kernel's switch) skips it too.
    """
    if "lib" in _loaded:
        return _loaded["lib"]
    lib = compiler.load("wavenet", SOURCE, "torch ops")
    if lib is not None:
        p, i, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
        for name in ("wavenet_f32", "wavenet_f64"):
            fn = getattr(lib, name)
            fn.argtypes = [i] * 9 + [p] * 13 + [i64, p, i64, i64, p, i64, p, p, i64, p]
            fn.restype = None
        lib.set_threads.argtypes, lib.set_threads.restype = [i, i64], i
        lib.set_threads(1, kernel.MIN_SPLIT)
    _loaded["lib"] = lib
    return lib
