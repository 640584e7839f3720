// The library's entry points that are not a model's loop: the team's size, the structs' layout for the
// loader's check, and single products for the per-operation tests.
#include <cstddef>
#include <cstring>
#include <mutex>

#include "gemv.h"
#include "soundalike.h"
#include "team.h"
#include "vec.h"

extern "C" int32_t sl_set_threads(int32_t n, int64_t min_split) {
    std::lock_guard<std::mutex> lock(team::calls());
    team::resize(n, min_split);
    return team::size();
}

namespace {

// Writes sizeof(S), then offsetof(S, f) for each field f listed, into out[0 .. max); returns how many.
#define LAYOUT(S, ...)                                                                    \
    if (std::strcmp(name, #S) == 0) {                                                     \
        const int64_t v[] = {(int64_t)sizeof(S), __VA_ARGS__};                           \
        const int32_t count = (int32_t)(sizeof(v) / sizeof(v[0]));                        \
        for (int32_t i = 0; i < count && i < max; i++) out[i] = v[i];                      \
        return count;                                                                     \
    }
#define AT(S, f) (int64_t)offsetof(S, f)

int32_t layout(const char* name, int64_t* out, int32_t max) {
    LAYOUT(sl_matrix, AT(sl_matrix, data), AT(sl_matrix, scale), AT(sl_matrix, rows), AT(sl_matrix, cols),
           AT(sl_matrix, blocks))
    LAYOUT(sl_linear, AT(sl_linear, weight), AT(sl_linear, bias))
    LAYOUT(sl_rnn_layer, AT(sl_rnn_layer, ih), AT(sl_rnn_layer, hh))
    LAYOUT(sl_tier, AT(sl_tier, frame), AT(sl_tier, ratio), AT(sl_tier, lstm), AT(sl_tier, n_layers),
           AT(sl_tier, input), AT(sl_tier, layers), AT(sl_tier, skip), AT(sl_tier, upsample), AT(sl_tier, state),
           AT(sl_tier, cond))
    LAYOUT(sl_head, AT(sl_head, kind), AT(sl_head, levels), AT(sl_head, dim), AT(sl_head, n_params),
           AT(sl_head, noise_width), AT(sl_head, params), AT(sl_head, fine), AT(sl_head, coarse_embedding),
           AT(sl_head, params_t), AT(sl_head, fine_t))
    LAYOUT(sl_samplernn, AT(sl_samplernn, dtype), AT(sl_samplernn, weights), AT(sl_samplernn, q_levels),
           AT(sl_samplernn, dim), AT(sl_samplernn, n_tiers), AT(sl_samplernn, sparse), AT(sl_samplernn, digits),
           AT(sl_samplernn, radix), AT(sl_samplernn, tiers), AT(sl_samplernn, tables), AT(sl_samplernn, hidden),
           AT(sl_samplernn, hidden_t), AT(sl_samplernn, head))
    LAYOUT(sl_wavenet_layer, AT(sl_wavenet_layer, conv), AT(sl_wavenet_layer, residual),
           AT(sl_wavenet_layer, dilation), AT(sl_wavenet_layer, offset))
    LAYOUT(sl_wavenet, AT(sl_wavenet, dtype), AT(sl_wavenet, n_layers), AT(sl_wavenet, kernel_size),
           AT(sl_wavenet, residual), AT(sl_wavenet, dilation_channels), AT(sl_wavenet, q_levels),
           AT(sl_wavenet, digits), AT(sl_wavenet, radix), AT(sl_wavenet, embedding), AT(sl_wavenet, layers),
           AT(sl_wavenet, skip), AT(sl_wavenet, hidden), AT(sl_wavenet, head), AT(sl_wavenet, ring))
    LAYOUT(sl_streams, AT(sl_streams, batch), AT(sl_streams, seq), AT(sl_streams, seq_stride),
           AT(sl_streams, pos), AT(sl_streams, noise), AT(sl_streams, noise_stride),
           AT(sl_streams, temperature), AT(sl_streams, log_floor), AT(sl_streams, tail), AT(sl_streams, bias),
           AT(sl_streams, pull), AT(sl_streams, echo), AT(sl_streams, amp), AT(sl_streams, decay),
           AT(sl_streams, cap), AT(sl_streams, logits),
           AT(sl_streams, logits_stride))
    return 0;
}

template <typename T>
void test_gemv(int32_t weights, const sl_matrix& w, const void* bias, const void* x, int32_t batch, void* y,
               bool relu) {
    const T* b = (const T*)bias;
    if (weights == SL_BF16) gemv<T, bf16>(w, b, (const T*)x, batch, (T*)y, relu);
    else if (weights == SL_INT8) gemv<T, int8_t>(w, b, (const T*)x, batch, (T*)y, relu);
    else gemv<T, T>(w, b, (const T*)x, batch, (T*)y, relu);
}

template <typename T>
void test_gemv_sparse(int32_t weights, const sl_matrix& wt, const void* bias, const void* x, void* y, bool relu,
                      int* nz) {
    const T* b = (const T*)bias;
    if (weights == SL_BF16) gemv_sparse<T, bf16>(wt, b, (const T*)x, (T*)y, relu, nz);
    else if (weights == SL_INT8) gemv_sparse<T, int8_t>(wt, b, (const T*)x, (T*)y, relu, nz);
    else gemv_sparse<T, T>(wt, b, (const T*)x, (T*)y, relu, nz);
}

}  // namespace

extern "C" int32_t sl_layout(const char* name, int64_t* out, int32_t max) { return layout(name, out, max); }

extern "C" void sl_test_gemv(int32_t dtype, int32_t weights, const sl_matrix* w, const void* bias, const void* x,
                             int32_t batch, void* y, int32_t relu) {
    std::lock_guard<std::mutex> lock(team::calls());
    if (dtype == SL_F64) test_gemv<double>(weights, *w, bias, x, batch, y, relu);
    else test_gemv<float>(weights, *w, bias, x, batch, y, relu);
}

extern "C" void sl_test_gemv_sparse(int32_t dtype, int32_t weights, const sl_matrix* wt, const void* bias,
                                    const void* x, void* y, int32_t relu, int32_t* nz) {
    std::lock_guard<std::mutex> lock(team::calls());
    if (dtype == SL_F64) test_gemv_sparse<double>(weights, *wt, bias, x, y, relu, nz);
    else test_gemv_sparse<float>(weights, *wt, bias, x, y, relu, nz);
}
