// The interface of the sampling library: every exported function and the structs it takes. Python mirrors
// these structs with ctypes.Structure (kernel.py) and checks their layout against `sl_layout` before use, so
// a field added on one side only is refused instead of read as the wrong bytes.
//
// Conventions: matrices are row-major; "T" is the compute type of the model (`dtype`: float or double);
// every size is in elements unless it says bytes. One call runs at a time (they share the thread team).
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum sl_dtype { SL_F32 = 0, SL_F64 = 1 };
// How a matrix's weights are stored: as T, as bfloat16 (the top half of a float32, widened exactly on load), or
// as int8 with one float32 scale per output (a product sums q * x and multiplies each output by its scale).
enum sl_weights { SL_FULL = 0, SL_BF16 = 1, SL_INT8 = 2 };

// A weight matrix (rows, cols) and, for int8, its scales. Stored dense (blocks NULL: row-major data), or
// block-sparse: the rows in groups of SL_GROUP, each group keeping only the columns where one of its weights is
// nonzero (a "16x1 block", as WaveRNN's and LPCNet's sparse products). blocks: (groups + 1) int32 offsets, then
// the column of each stored block as uint16, group after group, ascending; data: (blocks, SL_GROUP) weights, a
// block's weights for rows g * SL_GROUP .. + SL_GROUP (rows past `rows` zero). A product reads only the stored
// blocks and their columns.
#define SL_GROUP 16
typedef struct sl_matrix {
    const void* data;
    const float* scale;  // SL_INT8: one per output (a row of W; a column of a transposed W); else NULL
    int32_t rows, cols;
    const int32_t* blocks;  // NULL: dense; else the block-sparse index above
} sl_matrix;

// y = W x + bias; bias (W.rows,) of T.
typedef struct sl_linear {
    sl_matrix weight;
    const void* bias;
} sl_linear;

// One layer of a PyTorch GRU / LSTM: gates = ih x + hh h, (3 or 4) * dim of them, in PyTorch's order.
typedef struct sl_rnn_layer {
    sl_linear ih, hh;
} sl_rnn_layer;

// A SampleRNN frame tier: per frame of `frame` samples, the input projection of the levels, the RNN layers,
// the optional skip projection of every layer's output and the upsampling to `ratio` conditioning vectors.
typedef struct sl_tier {
    int32_t frame, ratio, lstm, n_layers;
    sl_linear input;             // (dim, frame)
    const sl_rnn_layer* layers;  // (n_layers,), bottom first
    sl_linear skip;              // (dim, n_layers * dim); weight.data NULL: no skip projection
    sl_linear upsample;          // (ratio * dim, dim)
    void* state;                 // (1 or 2, n_layers, batch, dim) of T: h, then the LSTM's c; updated in place
    void* cond;                  // (batch, ratio, dim) of T: written, read by the tier below
} sl_tier;

// The output head of both models (models/heads.py): a sample's features (dim) -> the head's parameters ->
// the sample's level. Its matrices are stored like the rest of its model's (sl_weights).
enum sl_head_kind { SL_SOFTMAX = 0, SL_COARSE_FINE = 1, SL_LOGISTIC_MIXTURE = 2 };
typedef struct sl_head {
    int32_t kind, levels, dim, n_params, noise_width;
    sl_linear params;              // (n_params, dim): the model's projection of the features
    sl_linear fine;                // SL_COARSE_FINE: (256, dim), applied to relu(z + coarse_embedding[coarse])
    const void* coarse_embedding;  // SL_COARSE_FINE: (n_params, dim) of T; else NULL
    sl_matrix params_t, fine_t;    // the same matrices transposed, for per-stream sparse products (or NULL)
} sl_head;

// A SampleRNN: its tiers and the sample-level MLP.
typedef struct sl_samplernn {
    int32_t dtype, weights, q_levels, dim, n_tiers;
    int32_t sparse;              // nonzero: the MLP runs per stream on hidden_t / the head's transposed matrices,
                                 // skipping zero inputs
    int32_t digits, radix;       // a level's input: `digits` numbers below `radix` (heads.input_digits)
    const sl_tier* tiers;        // (n_tiers,), bottom first; tiers[n_tiers - 1].frame samples per call
    const void* tables;          // (tiers[0].frame, digits * radix, dim) of T: the folded embedding and input layer
    sl_linear hidden;            // (dim, dim)
    sl_matrix hidden_t;          // the same matrix transposed, for the sparse MLP
    sl_head head;
} sl_samplernn;

// One WaveNet layer: the dilated convolution over kernel_size taps (the newest the layer's input, the older
// ones from its queue in the ring) and the residual projection of its gated output.
typedef struct sl_wavenet_layer {
    sl_linear conv;        // (2 * dilation_channels, kernel_size * residual), taps oldest first
    sl_matrix residual;    // (residual, dilation_channels), no bias; data NULL on the last layer
    int32_t dilation;
    int64_t offset;        // the ring slot where its queue of (kernel_size - 1) * dilation inputs begins
} sl_wavenet_layer;

// A WaveNet; weights always stored as T.
typedef struct sl_wavenet {
    int32_t dtype, n_layers, kernel_size, residual, dilation_channels, q_levels;
    int32_t digits, radix;            // a level's input: `digits` numbers below `radix` (heads.input_digits)
    const void* embedding;            // (digits * radix, residual)
    const sl_wavenet_layer* layers;   // (n_layers,)
    sl_linear skip, hidden;           // (S, n_layers * dilation_channels), (O, S)
    sl_head head;                     // on the O features
    void* ring;                       // (slots, batch, residual) of T: every layer's queue; updated in place
} sl_wavenet;

// The streams a call draws samples for, by the head's rule of the randomness contract (head.h).
typedef struct sl_streams {
    int32_t batch;
    int64_t* seq;           // (batch, seq_stride) levels: read before pos, written at [pos, pos + n)
    int64_t seq_stride, pos;
    const float* noise;     // (batch, noise_stride), each (n, head.noise_width) from its start
    int64_t noise_stride;
    const float* temperature;  // (batch,)
    const float* log_floor;    // (batch,): log(min_p), -inf for none
    const float* tail;         // (batch,): the logistic's cut tail, (1 - sqrt(1 - min_p)) / 2
    const float* bias;         // NULL, or (batch, head.levels): added to a softmax head's tempered logits
    // NULL, or the heard tilt of a softmax head (models/heads.py): (batch,) strengths, (batch,) echoes (each
    // stream's last sample as heard, updated in place by every draw), (head.levels,) amplitudes
    const float* pull;
    float* echo;
    const float* amp;
    float decay, cap;          // the echo's decay, the cap of a squared amplitude
    void* logits;           // NULL, or (batch, logits_stride) of T, each (n, head.n_params) from its start
    int64_t logits_stride;
} sl_streams;

// Bytes of scratch memory a call for `batch` streams needs (the `work` argument).
int64_t sl_samplernn_work_bytes(const sl_samplernn* model, int32_t batch);
int64_t sl_wavenet_work_bytes(const sl_wavenet* model, int32_t batch);

// A whole top frame (tiers[n_tiers - 1].frame samples) of SampleRNN for every stream: every frame tier once
// per its own frame, top first, and the samples of each bottom frame, in the order of samplernn.py's torch loop.
void sl_samplernn_top_frame(const sl_samplernn* model, const sl_streams* streams, void* work);
// n samples of WaveNet for every stream, from ring step `step` (which slots hold which past inputs).
void sl_wavenet_steps(const sl_wavenet* model, const sl_streams* streams, int32_t n, int64_t step, void* work);

// Threads of the compiled loops from now on (1: no helpers), and the smallest job, in multiply-adds, they split
// (< 0: unchanged; 0 splits every product); returns the number of threads in use.
int32_t sl_set_threads(int32_t n, int64_t min_split);

// sizeof the struct `name` and the offset of each of its fields in declaration order, into out (at most max
// numbers); returns how many it wrote, 0 for an unknown name.
int32_t sl_layout(const char* name, int64_t* out, int32_t max);

// Single products for the per-operation tests, split between the team like the loops' own:
// y (batch, W.rows) = x (batch, W.cols) W^T + bias (W dense or block-sparse), and the zero-skipping
// y (WT.cols,) = x (WT.rows,) WT + bias,
// optionally through a ReLU; nz: (WT.rows,) ints of scratch.
void sl_test_gemv(int32_t dtype, int32_t weights, const sl_matrix* w, const void* bias, const void* x,
                  int32_t batch, void* y, int32_t relu);
void sl_test_gemv_sparse(int32_t dtype, int32_t weights, const sl_matrix* wt, const void* bias, const void* x,
                         void* y, int32_t relu, int32_t* nz);

#ifdef __cplusplus
}
#endif
