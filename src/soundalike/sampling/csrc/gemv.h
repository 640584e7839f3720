// The matrix-vector products of both models, in the compute type T (float or double) with weights stored as
// W_t (T, bf16 or int8_t: see sl_weights), split between the team's threads by outputs. Each output is
// summed in a fixed order whatever the split: bitwise the same results for any number of threads.
#pragma once
#include "soundalike.h"

// Y (B, W.rows) = X (B, W.cols) W^T + bias, optionally through a ReLU; W dense or block-sparse (sl_matrix).
template <typename T, typename W_t>
void gemv(const sl_matrix& W, const T* bias, const T* X, int B, T* Y, bool relu);

// y (WT.cols,) = x (WT.rows,) WT + bias, optionally through a ReLU, for WT = W transposed, summing only the
// rows of the nonzero inputs: after a ReLU about half of x is exactly zero, so this reads about half of the
// weights that `gemv` reads. nz: (WT.rows,) ints of scratch.
template <typename T, typename W_t>
void gemv_sparse(const sl_matrix& WT, const T* bias, const T* x, T* y, bool relu, int* nz);
