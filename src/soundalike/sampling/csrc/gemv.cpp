// The products of gemv.h: 512-bit vectors (vec.h), four rows at a time, prefetching ahead.
#include "gemv.h"

#include <type_traits>

#include "team.h"
#include "vec.h"

namespace {

template <typename W_t> constexpr bool is_int8() { return std::is_same<W_t, int8_t>::value; }

// Software prefetch of the weights a product streams: the rows PREFETCH_BYTES ahead, into L2 (locality 1:
// prefetcht2). Short rows (int8, bf16) are too short for the hardware's stream prefetcher to ramp up (see
// the README's measurements); 4 KB to 64 KB ahead are within noise.
constexpr int64_t PREFETCH_BYTES = 32768;

// Y[b, i] = W[i] . X[b] + bias[i] (optionally ReLU) for W (R x D) and X (B x D), rows i0 <= i < i1 (i0 a
// multiple of 4; i1 too, or R). ROWS_AT_ONCE rows at a time (vec.h: as many as keep their sums in registers)
// share each load of x; two sums per row hide the FMA latency. Each row's summation order is fixed, whatever
// the number of rows at once: the same results with AVX-512 as with AVX2.
template <typename T, typename W_t>
void gemv_rows(const W_t* __restrict W, const float* __restrict scale, const T* __restrict bias,
               const T* __restrict X, int B, int R, int D, T* __restrict Y, bool relu, int i0, int i1) {
    typedef Reg<T> V;
    constexpr int N = 64 / sizeof(T), K = ROWS_AT_ONCE, P = PARTS, L = N / PARTS;
    const int Dv = D - D % (2 * N);
    int i = i0;
    for (; i + K <= i1; i += K) {
        const W_t* w[K];
        for (int r = 0; r < K; r++) w[r] = W + (int64_t)(i + r) * D;
        // Prefetch the block of K rows PREFETCH_BYTES ahead, spread over this block's first pass.
        const int64_t block_bytes = K * (int64_t)D * sizeof(W_t);
        const int64_t ahead = (PREFETCH_BYTES + block_bytes - 1) / block_bytes;
        const int64_t lines = i + K * ahead + K <= i1 ? (block_bytes + 63) / 64 : 0;
        const char* next = lines ? (const char*)(w[0] + (int64_t)K * ahead * D) : nullptr;
        const int64_t per = Dv ? (lines * 2 * N + Dv - 1) / Dv : 0;
        for (int b = 0; b < B; b++) {
            const T* x = X + (int64_t)b * D;
            V a[K][P], c[K][P];
            for (int r = 0; r < K; r++)
                for (int p = 0; p < P; p++) a[r][p] = c[r][p] = V{};
            for (int k = 0; k < Dv; k += 2 * N) {
                if (b == 0)
                    for (int64_t l = k / (2 * N) * per, e = l + per < lines ? l + per : lines; l < e; l++)
                        __builtin_prefetch(next + l * 64, 0, 1);
                V x0[P], x1[P];
                for (int p = 0; p < P; p++) {
                    x0[p] = loadr<T>(x + k + p * L);
                    x1[p] = loadr<T>(x + k + N + p * L);
                }
                for (int r = 0; r < K; r++)
                    for (int p = 0; p < P; p++) {
                        a[r][p] = fmadd<T>(a[r][p], loadr<T>(w[r] + k + p * L), x0[p]);
                        c[r][p] = fmadd<T>(c[r][p], loadr<T>(w[r] + k + N + p * L), x1[p]);
                    }
            }
            T s[K];
            for (int r = 0; r < K; r++) {
                s[r] = hsum<T>(a[r], c[r]);
                for (int k = Dv; k < D; k++) s[r] += scalar<T>(w[r][k]) * x[k];
            }
            T* y = Y + (int64_t)b * R + i;
            if (is_int8<W_t>())
                for (int r = 0; r < K; r++) s[r] *= scale[i + r];
            for (int r = 0; r < K; r++) {
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

// y[r..] = sum over the m nonzero inputs nz of x[k] * WT[k, r..], CH registers (Reg, vec.h) at a time from r
// while they fit before r1; returns where it stopped. Each output sums in the order of nz whatever CH.
template <int CH, typename T, typename W_t>
inline int sparse_pass(const W_t* __restrict WT, const T* __restrict x, int R, T* __restrict y,
                       const int* __restrict nz, int m, int r, int r1) {
    typedef Reg<T> V;
    constexpr int N = sizeof(V) / sizeof(T);
    for (; r + CH * N <= r1; r += CH * N) {
        V acc[CH] = {};
        for (int i = 0; i < m; i++) {
            const W_t* row = WT + (int64_t)nz[i] * R + r;
            const V xk = V{} + x[nz[i]];
            for (int v = 0; v < CH; v++) acc[v] = fmadd<T>(acc[v], loadr<T>(row + v * N), xk);
        }
        for (int v = 0; v < CH; v++) std::memcpy(y + r + v * N, &acc[v], sizeof(V));
    }
    return r;
}

// Outputs r0 <= r < r1 of gemv_sparse from the m nonzero inputs nz; WT (D x R).
template <typename T, typename W_t>
void gemv_sparse_cols(const W_t* __restrict WT, const float* __restrict scale, const T* __restrict bias,
                      const T* __restrict x, int R, T* __restrict y, bool relu, const int* __restrict nz, int m,
                      int r0, int r1) {
    // Passes over the nonzero inputs holding WIDEST_PASS (vec.h: as many as stay in registers), a half, a
    // quarter, then 1 register(s) of y: enough independent sums to hide the FMA latency also for a thread's
    // share of a small product.
    int r = sparse_pass<WIDEST_PASS, T, W_t>(WT, x, R, y, nz, m, r0, r1);
    r = sparse_pass<WIDEST_PASS / 2, T, W_t>(WT, x, R, y, nz, m, r, r1);
    r = sparse_pass<WIDEST_PASS / 4, T, W_t>(WT, x, R, y, nz, m, r, r1);
    r = sparse_pass<1, T, W_t>(WT, x, R, y, nz, m, r, r1);
    for (; r < r1; r++) {
        T acc = 0;
        for (int i = 0; i < m; i++) acc += scalar<T>(WT[(int64_t)nz[i] * R + r]) * x[nz[i]];
        y[r] = acc;
    }
    if (is_int8<W_t>())
        for (r = r0; r < r1; r++) y[r] *= scale[r];
    for (r = r0; r < r1; r++) {
        const T v = y[r] + bias[r];
        y[r] = relu && v < 0 ? 0 : v;
    }
}

// Row groups g0 <= g < g1 of a block-sparse W (sl_matrix): for each stream, the group's SL_GROUP outputs summed
// over its stored blocks in their order, a vector of N outputs at a time, in four interleaved partial sums (block
// i into sum i % 4, to hide the FMA latency; 256-bit named variables, which stay in registers) added in a
// fixed order: bitwise the same whichever thread runs the group.
template <typename T, typename W_t>
void block_rows(const sl_matrix& W, const T* __restrict bias, const T* __restrict X, int B, T* __restrict Y,
                bool relu, int g0, int g1) {
    typedef typename Half<T>::type V;
    constexpr int N = 32 / sizeof(T);  // SL_GROUP / N vectors per block
    const int R = W.rows, D = W.cols, G = (R + SL_GROUP - 1) / SL_GROUP;
    const int32_t* start = W.blocks;
    const uint16_t* column = (const uint16_t*)(W.blocks + G + 1);
    const W_t* data = (const W_t*)W.data;
    for (int g = g0; g < g1; g++) {
        const int i0 = start[g], i1 = start[g + 1], r0 = g * SL_GROUP;
        const int rows = R - r0 < SL_GROUP ? R - r0 : SL_GROUP;
        for (int b = 0; b < B; b++) {
            const T* x = X + (int64_t)b * D;
            T s[SL_GROUP];
            for (int v = 0; v < SL_GROUP; v += N) {
                const W_t* w = data + (int64_t)i0 * SL_GROUP + v;
                V a0 = {}, a1 = {}, a2 = {}, a3 = {};
                int i = i0;
                for (; i + 4 <= i1; i += 4, w += 4 * SL_GROUP) {
                    a0 += loadh<T>(w) * x[column[i]];
                    a1 += loadh<T>(w + SL_GROUP) * x[column[i + 1]];
                    a2 += loadh<T>(w + 2 * SL_GROUP) * x[column[i + 2]];
                    a3 += loadh<T>(w + 3 * SL_GROUP) * x[column[i + 3]];
                }
                if (i < i1) a0 += loadh<T>(w) * x[column[i]];
                if (i + 1 < i1) a1 += loadh<T>(w + SL_GROUP) * x[column[i + 1]];
                if (i + 2 < i1) a2 += loadh<T>(w + 2 * SL_GROUP) * x[column[i + 2]];
                const V sum = (a0 + a1) + (a2 + a3);
                std::memcpy(s + v, &sum, sizeof(V));
            }
            T* y = Y + (int64_t)b * R + r0;
            for (int r = 0; r < rows; r++) {
                const T v = (is_int8<W_t>() ? s[r] * W.scale[r0 + r] : s[r]) + bias[r0 + r];
                y[r] = relu && v < 0 ? 0 : v;
            }
        }
    }
}

}  // namespace

// Split between the team's threads in blocks of 4 rows (see team::parts); a block-sparse W in row groups.
template <typename T, typename W_t>
void gemv(const sl_matrix& W, const T* bias, const T* X, int B, T* Y, bool relu) {
    const int R = W.rows, D = W.cols;
    if (W.blocks) {
        const int G = (R + SL_GROUP - 1) / SL_GROUP;
        const int n = team::parts((int64_t)B * W.blocks[G] * SL_GROUP, G / 2);
        return team::run([&](int t) {
            block_rows<T, W_t>(W, bias, X, B, Y, relu, team::begin(G, 1, t, n), team::begin(G, 1, t + 1, n));
        }, n);
    }
    const W_t* w = (const W_t*)W.data;
    const int n = team::parts((int64_t)B * R * D, R / 8);
    team::run([&](int t) {
        gemv_rows<T, W_t>(w, W.scale, bias, X, B, R, D, Y, relu, team::begin(R, 4, t, n),
                          team::begin(R, 4, t + 1, n));
    }, n);
}

// Split between the team's threads in whole vectors (each output's sum runs in the same order either way).
template <typename T, typename W_t>
void gemv_sparse(const sl_matrix& WT, const T* bias, const T* x, T* y, bool relu, int* nz) {
    constexpr int N = 64 / sizeof(T);
    const int D = WT.rows, R = WT.cols;
    const W_t* w = (const W_t*)WT.data;
    int m = 0;
    for (int k = 0; k < D; k++) if (x[k] != 0) nz[m++] = k;
    const int n = team::parts((int64_t)m * R, R / (2 * N));
    team::run([&](int t) {
        gemv_sparse_cols<T, W_t>(w, WT.scale, bias, x, R, y, relu, nz, m, team::begin(R, N, t, n),
                                 team::begin(R, N, t + 1, n));
    }, n);
}

#define INSTANTIATE(T, W_t)                                                                \
    template void gemv<T, W_t>(const sl_matrix&, const T*, const T*, int, T*, bool);       \
    template void gemv_sparse<T, W_t>(const sl_matrix&, const T*, const T*, T*, bool, int*);
INSTANTIATE(float, float)
INSTANTIATE(double, double)
INSTANTIATE(float, bf16)
INSTANTIATE(double, bf16)
INSTANTIATE(float, int8_t)
INSTANTIATE(double, int8_t)
