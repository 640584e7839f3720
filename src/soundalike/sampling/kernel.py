"""SampleRNN's generation loop on the CPU in C++: one call draws a whole top frame for all streams.

`top_frame_<T>[_bf16]`, in the order of the torch loop in samplernn.py: per bottom frame, every frame tier
whose frame starts there (`tier_step`: input projection, GRU / LSTM layers with PyTorch's cell equations,
skip projection, upsampling), then the frame's samples (`mlp_frame`): per sample, gather and sum `context`
rows of the folded input tables, add the tier's conditioning, run the two-layer head (skipping the inputs a
ReLU zeroed when there are few streams) and draw the sample with the Gumbel-max rule of the randomness
contract (`argmax(float32(logits) / temperature + noise)`, first index on ties), written straight into the
history it reads from. In Python that is ~10 dispatches per sample; here one foreign call per top frame.

Batch-1 speed is bounded by reading the weights (L2 / L3 / DRAM), so the matrix-vector products stream
four rows at a time with 512-bit vectors, prefetching ahead; `_bf16` variants read bfloat16-stored weights
and widen them exactly, `_int8` variants read 8-bit weights and scale each output by its row's float32
scale (stored after the matrix). `set_threads(n, min_split)` sizes a thread team that splits each product
by output rows between n threads (`team` in the source; the WaveNet kernel shares it), with bitwise the
same results for any n: two cores read memory faster than one. The source is compiled at first use (about
two seconds) and loaded by `compiler.py`. Without a compiler, `load()` returns None and callers fall back to
`mlp_frame_numpy` for the samples and torch ops for the tiers.
"""

from __future__ import annotations

import ctypes

import numpy as np

from . import compiler

SOURCE = r"""
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <thread>
#include <type_traits>
#include <unistd.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

// The thread team: the calling thread and `size - 1` helper threads run one job at a time (`run(f, n)`
// calls f(0) .. f(n - 1), each once, and returns when all are done; a small job is split into fewer parts
// than there are threads, see `parts`, and helpers 1 .. n - 1 take part). Each member claims the next
// unclaimed part until none is left, so the caller never waits for a helper to start: on cores busy with
// other work (a helper descheduled for milliseconds) it simply runs the parts itself, and it waits only for
// parts a helper has begun. Helpers
// spin between jobs (a job comes every few microseconds while sampling), then yield the core, then sleep
// once idle for a few milliseconds. Work is split by output rows, and part i is always the same rows, so
// every output is computed by the same code in the same order whoever runs it and whatever the team's size:
// results are bitwise identical for any number of threads.
namespace team {
struct State {
    int size = 1, created = 0;
    int64_t min_split = 0;  // below this many multiply-adds a job is not split (set by load(): MIN_SPLIT)
    pid_t pid = 0;
    // The current job's number << 8 | its number of parts: what wakes the helpers.
    std::atomic<uint64_t> word{0};
    // The current job's number << 8 | its next unclaimed part. A member claims a part by advancing it, which
    // succeeds only while the job is the one it was woken for: then `job` and `ctx`, set before the job was
    // published, are that job's, and the caller does not change them before every part is done.
    std::atomic<uint64_t> claim{0};
    std::atomic<int> done{0};      // parts of the current job finished
    std::atomic<int> sleeping{0};
    void (*job)(const void*, int) = nullptr;
    const void* ctx = nullptr;
    std::mutex m;
    std::condition_variable cv;
};
static State* state = new State;  // never destroyed: detached helpers may outlive static destructors
static std::mutex calls;          // one exported call at a time (the team and buffers are shared)

static inline void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

// Run unclaimed parts of job `id` (of n parts) until none is left.
static void run_parts(State* s, uint64_t id, int n) {
    uint64_t c = s->claim.load(std::memory_order_acquire);
    while ((c >> 8) == id && (int)(c & 255) < n) {
        if (s->claim.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
            s->job(s->ctx, (int)(c & 255));
            s->done.fetch_add(1, std::memory_order_acq_rel);
            c = s->claim.load(std::memory_order_acquire);
        }
    }
}

static void helper(State* s, int t, uint64_t seen) {
    for (;;) {
        uint64_t w;
        for (int spins = 0; (w = s->word.load(std::memory_order_acquire)) == seen;) {
            if (++spins < (1 << 10)) { pause(); continue; }
            if (spins < (1 << 14)) { std::this_thread::yield(); continue; }  // let a descheduled caller run
            std::unique_lock<std::mutex> lock(s->m);
            s->sleeping.fetch_add(1);
            s->cv.wait(lock, [&] { return s->word.load() != seen; });
            s->sleeping.fetch_sub(1);
        }
        seen = w;
        if (t < (int)(w & 255)) run_parts(s, w >> 8, (int)(w & 255));  // helpers 1 .. n - 1 of an n-part job
    }
}

static void resize(int n, int64_t min_split) {
    if (state->pid != getpid()) {  // first use, or a forked child (which has none of the parent's helpers)
        if (state->pid) state = new State;
        state->pid = getpid();
    }
    if (min_split >= 0) state->min_split = min_split;
    n = n < 1 ? 1 : n > 64 ? 64 : n;
    while (state->created < n - 1)
        std::thread(helper, state, ++state->created, state->word.load()).detach();
    state->size = n;
}

static inline int size() { return state->size; }

// Into how many parts to split a job of `work` multiply-adds that has `most` parts at the most: one per
// MIN_SPLIT of work, no more than the team's threads.
static inline int parts(int64_t work, int64_t most) {
    const State* s = state;
    int64_t p = s->min_split > 0 ? work / s->min_split : s->size;
    p = p < s->size ? p : s->size;
    p = p < most ? p : most;
    return p < 1 ? 1 : (int)p;
}

// Where part t of n begins when `total` items are split in whole units of `unit` (the last part takes the
// rest): part t covers [begin(total, unit, t, n), begin(total, unit, t + 1, n)), whoever runs it.
static inline int begin(int total, int unit, int t, int n) {
    return t == n ? total : total / unit * t / n * unit;
}

// f(0) .. f(n - 1), each once, on this thread and whichever helpers come; returns when all are done.
template <typename F>
static void run(const F& f, int n) {
    State* s = state;
    if (n <= 1) { f(0); return; }
    const uint64_t id = (s->word.load(std::memory_order_relaxed) >> 8) + 1;
    s->job = [](const void* c, int t) { (*(const F*)c)(t); };
    s->ctx = &f;
    s->done.store(0, std::memory_order_relaxed);
    s->claim.store(id << 8, std::memory_order_release);
    // seq_cst, like the helper's `sleeping` increment and its load of `word`: either it sees this job or
    // this sees it sleeping (and wakes it).
    s->word.store(id << 8 | (uint64_t)n);
    if (s->sleeping.load() > 0) {
        std::lock_guard<std::mutex> lock(s->m);
        s->cv.notify_all();
    }
    run_parts(s, id, n);
    // Parts a helper has begun: spin, then yield (that helper may need this very core).
    for (int spins = 0; s->done.load(std::memory_order_acquire) < n;)
        if (++spins < (1 << 10)) pause(); else std::this_thread::yield();
}

}  // namespace team

// 512-bit vectors (two 256-bit halves where AVX-512 is missing); unaligned loads through memcpy.
template <typename T> struct Vec;
template <> struct Vec<float> { typedef float type __attribute__((vector_size(64))); };
template <> struct Vec<double> { typedef double type __attribute__((vector_size(64))); };

template <typename T>
static inline typename Vec<T>::type load(const T* p) {
    typename Vec<T>::type v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

// Weights are stored as T, as bfloat16 (`bf16`: the top half of a float32, widened exactly on load), or as
// int8_t with one float32 scale per output (row of W; column of a transposed WT), stored after the matrix's
// bytes at the next multiple of 64 (`scales`): a product sums q * x and multiplies each output by its scale.
struct bf16 { uint16_t bits; };
typedef uint16_t u16x16 __attribute__((vector_size(32)));
typedef uint32_t u32x16 __attribute__((vector_size(64)));
typedef float f32x8 __attribute__((vector_size(32)));

static inline float widen(bf16 w) {
    const uint32_t u = (uint32_t)w.bits << 16;
    float f;
    std::memcpy(&f, &u, sizeof(f));
    return f;
}
template <typename T> static inline T scalar(T w) { return w; }
template <typename T> static inline T scalar(bf16 w) { return (T)widen(w); }
template <typename T> static inline T scalar(int8_t w) { return (T)w; }

template <typename W_t> constexpr bool is_int8() { return std::is_same<W_t, int8_t>::value; }
// The scales of an int8 matrix of `size` weights (null for other weight types).
template <typename W_t> static inline const float* scales(const W_t* W, int64_t size) {
    return is_int8<W_t>() ? (const float*)((const char*)W + (size + 63) / 64 * 64) : nullptr;
}

template <typename T> static inline typename Vec<T>::type loadw(const T* p) { return load(p); }
template <typename T> static inline typename Vec<T>::type loadw(const bf16* p);
template <> inline Vec<float>::type loadw<float>(const bf16* p) {
#ifdef __AVX512F__
    const __m512i u = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16);
    return (Vec<float>::type)_mm512_castsi512_ps(u);
#else
    u16x16 h;
    std::memcpy(&h, p, sizeof(h));
    const u32x16 u = __builtin_convertvector(h, u32x16) << 16;
    Vec<float>::type v;
    std::memcpy(&v, &u, sizeof(v));
    return v;
#endif
}
template <typename T> static inline typename Vec<T>::type loadw(const int8_t* p);
template <> inline Vec<float>::type loadw<float>(const int8_t* p) {
#ifdef __AVX512F__
    return (Vec<float>::type)_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)p)));
#else
    typedef int8_t i8x16 __attribute__((vector_size(16)));
    i8x16 q;
    std::memcpy(&q, p, sizeof(q));
    return __builtin_convertvector(q, Vec<float>::type);
#endif
}
template <> inline Vec<double>::type loadw<double>(const int8_t* p) {
    typedef int8_t i8x8 __attribute__((vector_size(8)));
    i8x8 q;
    std::memcpy(&q, p, sizeof(q));
    return __builtin_convertvector(q, Vec<double>::type);
}
template <> inline Vec<double>::type loadw<double>(const bf16* p) {
    uint32_t u[8];
    for (int l = 0; l < 8; l++) u[l] = (uint32_t)p[l].bits << 16;
    f32x8 f;
    std::memcpy(&f, u, sizeof(f));
    return __builtin_convertvector(f, Vec<double>::type);
}

// Sum of the lanes of a + b, by halving (a fixed order; a few vector adds instead of a scalar chain).
template <typename T>
static inline T hsum(typename Vec<T>::type a, typename Vec<T>::type b) {
    constexpr int N = 64 / sizeof(T);
    const typename Vec<T>::type s = a + b;
    T buf[N];
    std::memcpy(buf, &s, sizeof(s));
    for (int w = N / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) buf[l] += buf[l + w];
    return buf[0];
}

// Software prefetch of the weights a product streams: the rows PREFETCH_BYTES ahead, into L2 (locality 1:
// prefetcht2). Short rows (int8, bf16) are too short for the hardware's stream prefetcher to ramp up: 4096 x
// 1024 products from memory, 2 cores, medians of 3 (tools/bench_render.py shows the effect end to end):
// int8 15.8 -> 36.0, bf16 10.6 -> 17.8, float32 6.7 -> 8.4 G weights/s; 4 KB to 64 KB ahead within noise.
constexpr int64_t PREFETCH_BYTES = 32768;

// Y[b, i] = W[i] . X[b] + bias[i] (optionally ReLU) for W (R x D) row-major and X (B x D), rows i0 <= i < i1
// (i0 a multiple of 4; i1 too, or R). Four rows at a time share each load of x; two accumulators per row
// hide the FMA latency. Fixed summation order.
template <typename T, typename W_t>
static void gemv_rows(const W_t* __restrict W, const T* __restrict bias, const T* __restrict X, int B, int R,
                      int D, T* __restrict Y, bool relu, int i0, int i1) {
    typedef typename Vec<T>::type V;
    constexpr int N = 64 / sizeof(T);
    const int Dv = D - D % (2 * N);
    const float* scale = scales(W, (int64_t)R * D);
    int i = i0;
    for (; i + 4 <= i1; i += 4) {
        const W_t* w0 = W + (int64_t)i * D;
        const W_t* w1 = w0 + D;
        const W_t* w2 = w1 + D;
        const W_t* w3 = w2 + D;
        // Prefetch the block of 4 rows PREFETCH_BYTES ahead, spread over this block's first pass.
        const int64_t block_bytes = 4 * (int64_t)D * sizeof(W_t);
        const int64_t ahead = (PREFETCH_BYTES + block_bytes - 1) / block_bytes;
        const int64_t lines = i + 4 * ahead + 4 <= i1 ? (block_bytes + 63) / 64 : 0;
        const char* next = lines ? (const char*)(w0 + (int64_t)4 * ahead * D) : nullptr;
        const int64_t per = Dv ? (lines * 2 * N + Dv - 1) / Dv : 0;
        for (int b = 0; b < B; b++) {
            const T* x = X + (int64_t)b * D;
            V a0 = {}, a1 = {}, a2 = {}, a3 = {}, c0 = {}, c1 = {}, c2 = {}, c3 = {};
            for (int k = 0; k < Dv; k += 2 * N) {
                if (b == 0)
                    for (int64_t l = k / (2 * N) * per, e = l + per < lines ? l + per : lines; l < e; l++)
                        __builtin_prefetch(next + l * 64, 0, 1);
                const V x0 = load(x + k), x1 = load(x + k + N);
                a0 += loadw<T>(w0 + k) * x0; c0 += loadw<T>(w0 + k + N) * x1;
                a1 += loadw<T>(w1 + k) * x0; c1 += loadw<T>(w1 + k + N) * x1;
                a2 += loadw<T>(w2 + k) * x0; c2 += loadw<T>(w2 + k + N) * x1;
                a3 += loadw<T>(w3 + k) * x0; c3 += loadw<T>(w3 + k + N) * x1;
            }
            T s[4] = {hsum<T>(a0, c0), hsum<T>(a1, c1), hsum<T>(a2, c2), hsum<T>(a3, c3)};
            for (int k = Dv; k < D; k++) {
                s[0] += scalar<T>(w0[k]) * x[k]; s[1] += scalar<T>(w1[k]) * x[k];
                s[2] += scalar<T>(w2[k]) * x[k]; s[3] += scalar<T>(w3[k]) * x[k];
            }
            T* y = Y + (int64_t)b * R + i;
            if (is_int8<W_t>())
                for (int r = 0; r < 4; r++) s[r] *= scale[i + r];
            for (int r = 0; r < 4; r++) {
                const T v = s[r] + bias[i + r];
                y[r] = relu && v < 0 ? 0 : v;
            }
        }
    }
    for (; i < i1; i++) {
        const W_t* w = W + (int64_t)i * D;
        for (int b = 0; b < B; b++) {
            const T* x = X + (int64_t)b * D;
            T s = 0;
            for (int k = 0; k < D; k++) s += scalar<T>(w[k]) * x[k];
            if (is_int8<W_t>()) s *= scale[i];
            const T v = s + bias[i];
            Y[(int64_t)b * R + i] = relu && v < 0 ? 0 : v;
        }
    }
}

// gemv_rows over all R rows, split between the team's threads in blocks of 4 rows (see team::parts).
template <typename T, typename W_t>
static void gemv(const W_t* W, const T* bias, const T* X, int B, int R, int D, T* Y, bool relu) {
    const int n = team::parts((int64_t)B * R * D, R / 8);
    team::run([&](int t) {
        gemv_rows<T, W_t>(W, bias, X, B, R, D, Y, relu, team::begin(R, 4, t, n), team::begin(R, 4, t + 1, n));
    }, n);
}

// y[r..] = sum over the m nonzero inputs nz of x[k] * WT[k, r..], CH vectors at a time from r while they fit
// before r1; returns where it stopped. Each output sums in the order of nz whatever CH.
template <int CH, typename T, typename W_t>
static inline int sparse_pass(const W_t* __restrict WT, const T* __restrict x, int R, T* __restrict y,
                              const int* __restrict nz, int m, int r, int r1) {
    typedef typename Vec<T>::type V;
    constexpr int N = 64 / sizeof(T);
    for (; r + CH * N <= r1; r += CH * N) {
        V acc[CH] = {};
        for (int i = 0; i < m; i++) {
            const W_t* row = WT + (int64_t)nz[i] * R + r;
            const T xk = x[nz[i]];
            for (int v = 0; v < CH; v++) acc[v] += loadw<T>(row + v * N) * xk;
        }
        for (int v = 0; v < CH; v++) std::memcpy(y + r + v * N, &acc[v], sizeof(V));
    }
    return r;
}

// y = bias + sum over the nonzero x[k] of x[k] * WT[k] (optionally ReLU), WT (D x R) row-major: W transposed.
// After a ReLU about half of x is exactly zero, so this reads about half of the weights that `gemv` reads.
// Outputs r0 <= r < r1 from the m nonzero inputs nz.
template <typename T, typename W_t>
static void gemv_sparse_cols(const W_t* __restrict WT, const T* __restrict bias, const T* __restrict x, int R,
                             int D, T* __restrict y, bool relu, const int* __restrict nz, int m, int r0,
                             int r1) {
    // Passes over the nonzero inputs holding 16, 8, 4, then 1 vector(s) of y in registers: enough
    // independent sums to hide the FMA latency also for a thread's share of a small product.
    int r = sparse_pass<16, T, W_t>(WT, x, R, y, nz, m, r0, r1);
    r = sparse_pass<8, T, W_t>(WT, x, R, y, nz, m, r, r1);
    r = sparse_pass<4, T, W_t>(WT, x, R, y, nz, m, r, r1);
    r = sparse_pass<1, T, W_t>(WT, x, R, y, nz, m, r, r1);
    for (; r < r1; r++) {
        T acc = 0;
        for (int i = 0; i < m; i++) acc += scalar<T>(WT[(int64_t)nz[i] * R + r]) * x[nz[i]];
        y[r] = acc;
    }
    const float* scale = scales(WT, (int64_t)D * R);
    if (is_int8<W_t>())
        for (r = r0; r < r1; r++) y[r] *= scale[r];
    for (r = r0; r < r1; r++) {
        const T v = y[r] + bias[r];
        y[r] = relu && v < 0 ? 0 : v;
    }
}

// gemv_sparse_cols over all R outputs, split between the team's threads in whole vectors (each output's sum
// runs in the same order either way).
template <typename T, typename W_t>
static void gemv_sparse(const W_t* WT, const T* bias, const T* x, int R, int D, T* y, bool relu, int* nz) {
    constexpr int N = 64 / sizeof(T);
    int m = 0;
    for (int k = 0; k < D; k++) if (x[k] != 0) nz[m++] = k;
    const int n = team::parts((int64_t)m * R, R / (2 * N));
    team::run([&](int t) {
        gemv_sparse_cols<T, W_t>(WT, bias, x, R, D, y, relu, nz, m, team::begin(R, N, t, n),
                                 team::begin(R, N, t + 1, n));
    }, n);
}

// Sample pos + j of each of the B streams from its logits lg (B, Q) by the randomness contract's Gumbel-max
// rule, argmax(float32(logits) / temperature + noise), first index on ties; optionally keep the logits.
template <typename T>
static void draw(int B, int Q, const T* lg, const float* noise, int64_t noise_sb, const float* temp, int j,
                 int64_t* seq, int64_t seq_sb, int64_t pos, T* logits_out, int64_t logits_sb) {
    for (int b = 0; b < B; b++) {
        const T* l = lg + (int64_t)b * Q;
        const float* g = noise + b * noise_sb + (int64_t)j * Q;
        const float t = temp[b];
        int best = 0;
        float bv = (float)l[0] / t + g[0];
        for (int q = 1; q < Q; q++) {
            const float v = (float)l[q] / t + g[q];
            if (v > bv) { bv = v; best = q; }
        }
        seq[b * seq_sb + pos + j] = best;
        if (logits_out) std::memcpy(logits_out + b * logits_sb + (int64_t)j * Q, l, sizeof(T) * Q);
    }
}

// One bottom frame of `n` samples for B streams; see kernel.py for the arguments. With `sparse`, the head
// runs per stream on the transposed weights w1t, w2t skipping zero inputs; otherwise on w1, w2 for all
// streams at once (better from a few streams up: each weight row is then read once for every stream).
template <typename T, typename W_t>
static void mlp_frame(int B, int n, int C, int Q, int D,
                      const T* tables, const T* cond, int64_t cond_sb,
                      const W_t* w1, const T* b1, const W_t* w2, const T* b2, const W_t* w1t, const W_t* w2t,
                      int sparse,
                      int64_t* seq, int64_t seq_sb, int64_t pos,
                      const float* noise, int64_t noise_sb, const float* temp,
                      T* logits_out, int64_t logits_sb, T* work) {
    T* h = work;             // (B, D)
    T* h2 = h + B * D;       // (B, D)
    T* lg = h2 + B * D;      // (B, Q)
    int* nz = (int*)(lg + B * Q);  // (D,)
    // The input layer: rows of the tables gathered from memory (counted 4x in splitting it between threads).
    const int gather_parts = team::parts(4 * (int64_t)B * C * D, D / 64);
    for (int j = 0; j < n; j++) {
        team::run([&](int t) {
            const int d0 = team::begin(D, 16, t, gather_parts), d1 = team::begin(D, 16, t + 1, gather_parts);
            for (int b = 0; b < B; b++) {
                const int64_t* prev = seq + b * seq_sb + pos + j - C;
                T* hb = h + (int64_t)b * D;
                const T* row = tables + prev[0] * D;
                for (int d = d0; d < d1; d++) hb[d] = row[d];
                for (int p = 1; p < C; p++) {
                    row = tables + ((int64_t)p * Q + prev[p]) * D;
                    for (int d = d0; d < d1; d++) hb[d] += row[d];
                }
                const T* c = cond + b * cond_sb + (int64_t)j * D;
                for (int d = d0; d < d1; d++) {
                    const T v = hb[d] + c[d];
                    hb[d] = v > 0 ? v : 0;
                }
            }
        }, gather_parts);
        if (sparse) {
            for (int b = 0; b < B; b++) {
                gemv_sparse<T, W_t>(w1t, b1, h + (int64_t)b * D, D, D, h2 + (int64_t)b * D, true, nz);
                gemv_sparse<T, W_t>(w2t, b2, h2 + (int64_t)b * D, Q, D, lg + (int64_t)b * Q, false, nz);
            }
        } else {
            gemv<T, W_t>(w1, b1, h, B, D, D, h2, true);
            gemv<T, W_t>(w2, b2, h2, B, Q, D, lg, false);
        }
        draw<T>(B, Q, lg, noise, noise_sb, temp, j, seq, seq_sb, pos, logits_out, logits_sb);
    }
}

template <typename T> static inline T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }

// One frame tier on one frame for B streams, with PyTorch's GRU / LSTM cell equations; see kernel.py.
template <typename T, typename W_t>
static void tier_step(int B, int F, int R, int D, int L, int lstm, int skip, const int64_t* seq, int64_t seq_sb,
                      int64_t pos, int half, const T* upper, int64_t upper_sb, const W_t* w_in, const T* b_in,
                      const void* const* layers, const W_t* w_skip, const T* b_skip, const W_t* w_up,
                      const T* b_up, T* state, T* cond, T* work) {
    const int G = (lstm ? 4 : 3) * D;
    T* grid = work;            // (B, F)
    T* x = grid + B * F;       // (B, D)
    T* gi = x + B * D;         // (B, G)
    T* gh = gi + B * G;        // (B, G)
    T* outs = gh + B * G;      // (B, L * D): every layer's output, for the skip projection
    for (int b = 0; b < B; b++)
        for (int f = 0; f < F; f++) grid[b * F + f] = ((T)seq[b * seq_sb + pos - F + f] - (T)half) / (T)half;
    gemv<T, W_t>(w_in, b_in, grid, B, D, F, x, false);
    if (upper)
        for (int b = 0; b < B; b++)
            for (int d = 0; d < D; d++) x[b * D + d] += upper[b * upper_sb + d];
    const int64_t BD = (int64_t)B * D;
    for (int l = 0; l < L; l++) {
        const W_t* w_ih = (const W_t*)layers[4 * l];
        const W_t* w_hh = (const W_t*)layers[4 * l + 1];
        const T* b_ih = (const T*)layers[4 * l + 2];
        const T* b_hh = (const T*)layers[4 * l + 3];
        T* h = state + l * BD;
        T* c = state + (L + l) * BD;  // LSTM cell state
        gemv<T, W_t>(w_ih, b_ih, x, B, G, D, gi, false);
        gemv<T, W_t>(w_hh, b_hh, h, B, G, D, gh, false);
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
    if (skip) gemv<T, W_t>(w_skip, b_skip, outs, B, D, L * D, x, false);
    gemv<T, W_t>(w_up, b_up, x, B, R * D, D, cond, false);
}

// A whole top frame (`hop` samples) for B streams: every frame tier once per its own frame, top first, and the
// samples of each bottom frame, in the order of the Python loop in samplernn.py, with no foreign call between.
// Per tier k: ints[6k..6k+5] = frame (samples per step), ratio, n_rnn, lstm, skip, unused;
// ptrs[10k..10k+9] = w_in, b_in, layers, w_skip, b_skip, w_up, b_up, state, cond (B, ratio, D), work.
template <typename T, typename W_t>
static void top_frame(int n_tiers, const int64_t* ints, void* const* ptrs, int B, int hop, int fs, int Q, int D,
                      int half, const T* tables, const W_t* w1, const T* b1, const W_t* w2, const T* b2,
                      const W_t* w1t, const W_t* w2t, int sparse, int64_t* seq, int64_t seq_sb, int64_t pos,
                      const float* noise, int64_t noise_sb, const float* temp, T* logits_out, int64_t logits_sb,
                      T* work) {
    for (int t = 0; t < hop; t += fs) {
        for (int k = n_tiers - 1; k >= 0; k--) {
            const int64_t* in = ints + 6 * k;
            void* const* p = ptrs + 10 * k;
            if (t % in[0]) continue;
            const T* upper = nullptr;
            int64_t upper_sb = 0;
            if (k + 1 < n_tiers) {
                const int64_t above_ratio = ints[6 * (k + 1) + 1];
                upper = (const T*)ptrs[10 * (k + 1) + 8] + (t / in[0]) % above_ratio * D;
                upper_sb = above_ratio * D;
            }
            tier_step<T, W_t>(B, (int)in[0], (int)in[1], D, (int)in[2], (int)in[3], (int)in[4], seq, seq_sb, pos + t,
                              half, upper, upper_sb, (const W_t*)p[0], (const T*)p[1], (const void* const*)p[2],
                              (const W_t*)p[3], (const T*)p[4], (const W_t*)p[5], (const T*)p[6], (T*)p[7],
                              (T*)p[8], (T*)p[9]);
        }
        mlp_frame<T, W_t>(B, fs, fs, Q, D, tables, (const T*)ptrs[8], ints[1] * D, w1, b1, w2, b2, w1t, w2t, sparse,
                          seq, seq_sb, pos + t, noise + (int64_t)t * Q, noise_sb, temp,
                          logits_out ? logits_out + (int64_t)t * Q : nullptr, logits_sb, work);
    }
}

// Exported as <T>[_bf16]: compute type float or double, weights stored as T or bfloat16.
#define EXPORT(NAME, T, W_t)                                                                              \
extern "C" void top_frame_##NAME(int n_tiers, const int64_t* ints, void* const* ptrs, int B, int hop, int fs,   \
                                 int Q, int D, int half, const T* tables, const W_t* w1, const T* b1,           \
                                 const W_t* w2, const T* b2, const W_t* w1t, const W_t* w2t, int sparse,        \
                                 int64_t* seq, int64_t seq_sb, int64_t pos, const float* noise,                 \
                                 int64_t noise_sb, const float* temp, T* logits_out, int64_t logits_sb,         \
                                 T* work) {                                                                     \
    std::lock_guard<std::mutex> lock(team::calls);                                                          \
    top_frame<T, W_t>(n_tiers, ints, ptrs, B, hop, fs, Q, D, half, tables, w1, b1, w2, b2, w1t, w2t, sparse, seq, \
                      seq_sb, pos, noise, noise_sb, temp, logits_out, logits_sb, work);                     \
}
EXPORT(f32, float, float)
EXPORT(f64, double, double)
EXPORT(f32_bf16, float, bf16)
EXPORT(f64_bf16, double, bf16)
EXPORT(f32_int8, float, int8_t)
EXPORT(f64_int8, double, int8_t)

// Threads of the compiled loops from now on (1: no helpers), and the smallest job they split (< 0: unchanged;
// tests pass 0 to split every product); returns the number of threads in use.
extern "C" int set_threads(int n, int64_t min_split) {
    std::lock_guard<std::mutex> lock(team::calls);
    team::resize(n, min_split);
    return team::size();
}
"""

# The smallest matrix product (multiply-adds) the compiled loops split between threads: waking a helper costs
# about as much as a product of this size (measured on the demo model, 2 cores: 4,096 to 131,072 all within noise).
MIN_SPLIT = 16384

_loaded: dict[str, ctypes.CDLL | None] = {}


def load() -> ctypes.CDLL | None:
    """The compiled kernel library, or None (with one warning) when there is no working C++ compiler.

    SOUNDALIKE_KERNEL=numpy skips the compiled kernel.
    """
    if "lib" in _loaded:
        return _loaded["lib"]
    lib = compiler.load("mlp_frame", SOURCE, "the numpy loop")
    if lib is not None:
        p, i, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
        for name in (f"{t}{w}" for t in ("f32", "f64") for w in ("", "_bf16", "_int8")):
            fn = getattr(lib, f"top_frame_{name}")
            fn.argtypes = [i, p, p, i, i, i, i, i, i, p, p, p, p, p, p, p, i, p, i64, i64, p, i64, p, p, i64, p]
            fn.restype = None
        lib.set_threads.argtypes, lib.set_threads.restype = [i, i64], i
        lib.set_threads(1, MIN_SPLIT)
    _loaded["lib"] = lib
    return lib


def mlp_frame_numpy(tables: np.ndarray, cond: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray,
                    b2: np.ndarray, seq: np.ndarray, pos: int, noise: np.ndarray, temp: np.ndarray,
                    logits_out: np.ndarray | None) -> None:
    """The same loop as the C++ kernel, one sample at a time in numpy (the fallback).

    tables (C, Q, D), cond (B, n, D), w1 (D, D), w2 (Q, D), seq (B, L) int64 written at [pos, pos + n),
    noise (B, n, Q) float32 Gumbel, temp (B,) float32, logits_out (B, n, Q) or None.
    """
    C, Q, D = tables.shape
    n = cond.shape[1]
    flat = tables.reshape(C * Q, D)
    offsets = np.arange(C) * Q
    rows = np.arange(len(seq))
    for j in range(n):
        h = flat[seq[:, pos + j - C:pos + j] + offsets].sum(axis=1)  # (B, D)
        h += cond[:, j]
        np.maximum(h, 0, out=h)
        h2 = h @ w1.T
        h2 += b1
        np.maximum(h2, 0, out=h2)
        logits = h2 @ w2.T
        logits += b2
        v = logits.astype(np.float32) / temp[:, None] + noise[:, j]
        seq[rows, pos + j] = v.argmax(axis=1)
        if logits_out is not None:
            logits_out[:, j] = logits
