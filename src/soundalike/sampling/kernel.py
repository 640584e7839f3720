"""The compiled sampling library: its C interface (`csrc/soundalike.h`) mirrored in ctypes, built and loaded once.

One shared library, built from `csrc/` by `compiler.py` at first use, holds both model families' generation
loops on the CPU (SampleRNN's `sl_samplernn_top_frame`: every tier step and sample of a top frame in one call;
WaveNet's `sl_wavenet_steps`: `hop` samples in one call) and one thread team that splits each matrix product
by output rows between n threads, with bitwise the same results for any n (`Kernel.set_threads`). A call
takes structs: the model (its layers; a weight matrix with its int8 scales is a `Matrix`), the streams and a
scratch buffer whose size the library reports. The classes below mirror the header's structs field by field;
`load` compares their sizes and offsets with the library's own (`sl_layout`) and refuses, with a warning, a
library whose structs differ. Without the library, callers fall back to `mlp_frame_numpy` and torch ops
(SampleRNN) or torch ops (WaveNet).
"""

from __future__ import annotations

import ctypes
import warnings

import numpy as np
import torch

from . import compiler

# The smallest matrix product (multiply-adds) the compiled loops split between threads: waking a helper costs
# about as much as a product of this size (measured on the demo model, 2 cores: 4,096 to 131,072 all within noise).
MIN_SPLIT = 16384
DTYPES = {torch.float32: 0, torch.float64: 1}  # sl_dtype
WEIGHTS = {"full": 0, "bf16": 1, "int8": 2}  # sl_weights
# What the callers use without the library, and how much slower it is (`tools/bench_fallback.py`, demo and
# wavenet-demo at batch 1, one thread; the figure with its date: docs/SAMPLING.md).
FALLBACK = ("sampling falls back to numpy for SampleRNN (about 1.4x slower) and to torch ops for WaveNet (about "
            "8x slower) (demo configs, batch 1)")

_i32, _i64, _ptr = ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p


class Matrix(ctypes.Structure):
    """sl_matrix: a weight matrix (rows, cols) and, for int8, its float32 scales (one per output); dense, or
    block-sparse with its index in `blocks` (see `Blocks`)."""

    _fields_ = [("data", _ptr), ("scale", _ptr), ("rows", _i32), ("cols", _i32), ("blocks", _ptr)]


class Linear(ctypes.Structure):
    """sl_linear: y = W x + bias."""

    _fields_ = [("weight", Matrix), ("bias", _ptr)]


class RnnLayer(ctypes.Structure):
    """sl_rnn_layer: one GRU / LSTM layer."""

    _fields_ = [("ih", Linear), ("hh", Linear)]


class Tier(ctypes.Structure):
    """sl_tier: a SampleRNN frame tier, its recurrent state and its conditioning output."""

    _fields_ = [("frame", _i32), ("ratio", _i32), ("lstm", _i32), ("n_layers", _i32), ("input", Linear),
                ("layers", ctypes.POINTER(RnnLayer)), ("skip", Linear), ("upsample", Linear), ("state", _ptr),
                ("cond", _ptr)]


HEAD_KINDS = {"softmax": 0, "coarse_fine": 1, "logistic_mixture": 2}  # sl_head_kind


class Head(ctypes.Structure):
    """sl_head: the output head (models/heads.py): the model's projection of the features and its extras."""

    _fields_ = [("kind", _i32), ("levels", _i32), ("dim", _i32), ("n_params", _i32), ("noise_width", _i32),
                ("params", Linear), ("fine", Linear), ("coarse_embedding", _ptr), ("params_t", Matrix),
                ("fine_t", Matrix)]


class SampleRNN(ctypes.Structure):
    """sl_samplernn: the tiers and the sample-level MLP with its head."""

    _fields_ = [("dtype", _i32), ("weights", _i32), ("q_levels", _i32), ("dim", _i32), ("n_tiers", _i32),
                ("sparse", _i32), ("digits", _i32), ("radix", _i32), ("tiers", ctypes.POINTER(Tier)),
                ("tables", _ptr), ("hidden", Linear), ("hidden_t", Matrix), ("head", Head)]


class WaveNetLayer(ctypes.Structure):
    """sl_wavenet_layer: a dilated convolution, its residual projection and its queue in the ring."""

    _fields_ = [("conv", Linear), ("residual", Matrix), ("dilation", _i32), ("offset", _i64)]


class WaveNet(ctypes.Structure):
    """sl_wavenet: the layers, the output head and the ring of queues."""

    _fields_ = [("dtype", _i32), ("n_layers", _i32), ("kernel_size", _i32), ("residual", _i32),
                ("dilation_channels", _i32), ("q_levels", _i32), ("digits", _i32), ("radix", _i32),
                ("embedding", _ptr), ("layers", ctypes.POINTER(WaveNetLayer)), ("skip", Linear), ("hidden", Linear),
                ("head", Head), ("ring", _ptr)]


class Streams(ctypes.Structure):
    """sl_streams: the histories, noise, temperatures and optional logits of the streams a call draws for."""

    _fields_ = [("batch", _i32), ("seq", _ptr), ("seq_stride", _i64), ("pos", _i64), ("noise", _ptr),
                ("noise_stride", _i64), ("temperature", _ptr), ("log_floor", _ptr), ("tail", _ptr),
                ("bias", _ptr), ("pull", _ptr), ("echo", _ptr), ("amp", _ptr), ("decay", ctypes.c_float),
                ("cap", ctypes.c_float), ("logits", _ptr), ("logits_stride", _i64)]


STRUCTS = {"sl_matrix": Matrix, "sl_linear": Linear, "sl_rnn_layer": RnnLayer, "sl_tier": Tier,
           "sl_head": Head, "sl_samplernn": SampleRNN, "sl_wavenet_layer": WaveNetLayer, "sl_wavenet": WaveNet,
           "sl_streams": Streams}


def _scales_offset(numel: int) -> int:
    """Where an int8 matrix's scales begin in its buffer: the next multiple of 64 bytes (a cache line)."""
    return -(-numel // 64) * 64


def pack_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """int8 weights q (any shape, contiguous order) and their float32 scales in one uint8 buffer, as `matrix`
    reads it."""
    start = _scales_offset(q.numel())
    packed = torch.zeros(start + 4 * len(scale), dtype=torch.uint8)
    packed[:q.numel()] = q.contiguous().view(torch.uint8).reshape(-1)
    packed[start:].view(torch.float32)[:] = scale
    return packed


# Block-sparse matrices (sl_matrix.blocks): rows in groups of GROUP (SL_GROUP), a group storing only its columns
# that hold a nonzero weight. A matrix is stored so when at most BLOCK_DENSITY of its blocks are kept: below
# that the index (2 bytes a block) and the gathered inputs cost less than the skipped weights save.
GROUP = 16
BLOCK_DENSITY = 0.7


class Blocks:
    """A block-sparse weight matrix as the library reads it: `data` (blocks, GROUP) stored weights (the compute
    dtype or bfloat16), or `pack_int8`'s buffer of them and the rows' scales; `index` the int32 offsets of each
    group's blocks followed by their columns as uint16 (csrc/soundalike.h)."""

    def __init__(self, data: torch.Tensor, index: torch.Tensor, n_blocks: int):
        self.data, self.index, self.n_blocks = data, index, n_blocks


def block_columns(w: torch.Tensor) -> torch.Tensor:
    """w (rows, cols) -> (groups, cols) bool: which GROUP x 1 blocks hold a nonzero weight."""
    rows, cols = w.shape
    padded = torch.zeros(-(-rows // GROUP) * GROUP, cols, dtype=torch.bool)
    padded[:rows] = w.detach().cpu() != 0
    return padded.view(-1, GROUP, cols).any(dim=1)


def gather_blocks(w: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The kept blocks of w (rows, cols) in any dtype, group after group, columns ascending: (blocks, GROUP),
    rows past the last zero."""
    rows, cols = w.shape
    padded = torch.zeros(keep.shape[0] * GROUP, cols, dtype=w.dtype)
    padded[:rows] = w.detach().cpu()
    return padded.view(-1, GROUP, cols).transpose(1, 2)[keep].contiguous()  # (blocks, GROUP)


def block_index(keep: torch.Tensor) -> torch.Tensor:
    """The index of `block_columns`' kept blocks as the library reads it: int32 offsets (groups + 1), then each
    block's column as uint16, packed in one int32 tensor."""
    groups, cols = keep.shape
    assert cols < 1 << 16, f"a block-sparse matrix has at most {(1 << 16) - 1} columns, got {cols}"
    offsets = torch.zeros(groups + 1, dtype=torch.int32)
    offsets[1:] = keep.sum(dim=1).cumsum(0)
    columns = keep.nonzero()[:, 1].to(torch.int32)  # row-major: group after group, ascending
    packed = torch.zeros(-(-len(columns) // 2), dtype=torch.int32)
    packed.view(torch.int16)[:len(columns)] = columns.to(torch.int16)  # the low 16 bits: uint16 in C
    return torch.cat([offsets, packed])


def block_sparse(w: torch.Tensor, weights: str, dtype: torch.dtype) -> Blocks | None:
    """w (rows, cols) as a block-sparse matrix stored as `weights` (the values the dense storage would hold:
    `engine.compact`'s, int8 with one scale per row), or None when more than BLOCK_DENSITY of its blocks hold
    a nonzero weight."""
    from .engine import quantize_int8

    keep = block_columns(w)
    if keep.numel() == 0 or keep.float().mean() > BLOCK_DENSITY:
        return None
    n_blocks = int(keep.sum())
    if weights == "int8":
        q, scale = quantize_int8(w)
        data = pack_int8(gather_blocks(q, keep), scale)
    elif weights == "bf16":
        data = gather_blocks(w.to(torch.bfloat16), keep)
    else:
        data = gather_blocks(w.to(dtype), keep)
    return Blocks(data, block_index(keep), n_blocks)


def matrix(w: torch.Tensor | Blocks | None, rows: int, cols: int, weights: str = "full") -> Matrix:
    """The struct of a stored (rows, cols) weight matrix: w in the compute dtype, bfloat16, or `pack_int8`'s
    buffer (weights="int8"), or a `Blocks` of them; None for an absent one."""
    if w is None:
        return Matrix(None, None, rows, cols, None)
    blocks = None
    stored = rows * cols
    if isinstance(w, Blocks):
        blocks, stored, w = w.index.data_ptr(), w.n_blocks * GROUP, w.data
    assert w.is_contiguous() and w.device.type == "cpu"
    scale = w.data_ptr() + _scales_offset(stored) if weights == "int8" else None
    return Matrix(w.data_ptr(), scale, rows, cols, blocks)


def stored_bytes(w: torch.Tensor | Blocks | None) -> int:
    """Bytes a product reads of a stored matrix (its weights, int8 scales and block index)."""
    if w is None:
        return 0
    if isinstance(w, Blocks):
        return w.data.numel() * w.data.element_size() + w.index.numel() * 4
    return w.numel() * w.element_size()


def linear(w: torch.Tensor | Blocks | None, b: torch.Tensor | None, rows: int, cols: int,
           weights: str = "full") -> Linear:
    """The struct of y = W x + b, W (rows, cols) stored as for `matrix`, b (rows,) in the compute dtype."""
    assert b is None or (b.is_contiguous() and b.numel() == rows)
    return Linear(matrix(w, rows, cols, weights), None if b is None else b.data_ptr())


def streams(seq: torch.Tensor, pos: int, noise: torch.Tensor, controls, logits: torch.Tensor | None) -> Streams:
    """The struct of a call's streams: seq (B, L) int64, noise (B, n, W) float32, controls (`heads.Controls`,
    contiguous float32; the echo is updated in place), logits (B, n, P) or None; each stream's rows (n, W) and
    (n, P) contiguous."""
    W = noise.shape[2]
    assert seq.is_contiguous() and noise.stride(2) == 1 and noise.stride(1) == W
    assert logits is None or (logits.stride(2) == 1 and logits.stride(1) == logits.shape[2])
    assert all(c.is_contiguous() and c.dtype == torch.float32 for c in controls)
    lo = (None, 0) if logits is None else (logits.data_ptr(), logits.stride(0))
    bias = controls.bias.data_ptr() if controls.bias.shape[-1] else None
    heard: tuple = (None, None, None, 0.0, 0.0)
    if controls.pull.shape[-1]:
        heard = (controls.pull.data_ptr(), controls.echo.data_ptr(), controls.amp.data_ptr(),
                 controls.decay.item(), controls.cap.item())
    return Streams(seq.shape[0], seq.data_ptr(), seq.stride(0), pos, noise.data_ptr(), noise.stride(0),
                   controls.temperature.data_ptr(), controls.log_floor.data_ptr(), controls.tail.data_ptr(), bias,
                   *heard, *lo)


def head(h, params: Linear, dtype: torch.dtype, weights: str = "full", params_t: torch.Tensor | None = None,
         fine: tuple | None = None) -> tuple[Head, list]:
    """The struct of a stepper's output head `h` (`heads.Head`) given its model's projection `params`; `fine`:
    (stored weight, bias, stored transposed weight or None) of a coarse_fine head. Returns the struct and the
    tensors it points into (keep them alive)."""
    keep: list = []
    fine_lin, fine_t, emb = Linear(Matrix(None, None, 0, 0, None), None), Matrix(None, None, 0, 0, None), None
    if h.kind == "coarse_fine":
        fw, fb, fwt = fine
        emb = h.coarse_embedding.weight.detach().to(dtype).contiguous()
        keep += [fw, fb, fwt, emb]
        fine_lin = linear(fw, fb, 256, h.fine.in_features, weights)
        fine_t = matrix(fwt, h.fine.in_features, 256, weights)
    dim = params.weight.cols
    pt = matrix(params_t, dim, h.n_params, weights)
    return Head(HEAD_KINDS[h.kind], h.levels, dim, h.n_params, h.noise_width, params, fine_lin,
                None if emb is None else emb.data_ptr(), pt, fine_t), keep


class Kernel:
    """The loaded library, with its functions' argument types set."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib
        P = ctypes.POINTER
        for name, args, res in [
                ("sl_set_threads", [_i32, _i64], _i32),
                ("sl_samplernn_work_bytes", [P(SampleRNN), _i32], _i64),
                ("sl_samplernn_top_frame", [P(SampleRNN), P(Streams), _ptr], None),
                ("sl_wavenet_work_bytes", [P(WaveNet), _i32], _i64),
                ("sl_wavenet_steps", [P(WaveNet), P(Streams), _i32, _i64, _ptr], None),
                ("sl_test_gemv", [_i32, _i32, P(Matrix), _ptr, _ptr, _i32, _ptr, _i32], None),
                ("sl_test_gemv_sparse", [_i32, _i32, P(Matrix), _ptr, _ptr, _ptr, _i32, _ptr], None)]:
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, res

    def set_threads(self, n: int, min_split: int) -> int:
        """Threads of the compiled loops from now on, and the smallest product they split (< 0: unchanged;
        0: every product); returns the number of threads in use."""
        return self.lib.sl_set_threads(n, min_split)

    def samplernn_work(self, model: SampleRNN, batch: int) -> torch.Tensor:
        """A scratch buffer for `samplernn_top_frame` at `batch` streams."""
        return torch.empty(self.lib.sl_samplernn_work_bytes(model, batch), dtype=torch.uint8)

    def samplernn_top_frame(self, model: SampleRNN, s: Streams, work: torch.Tensor) -> None:
        """A whole top frame of samples for every stream (see csrc/soundalike.h)."""
        self.lib.sl_samplernn_top_frame(model, s, work.data_ptr())

    def wavenet_work(self, model: WaveNet, batch: int) -> torch.Tensor:
        """A scratch buffer for `wavenet_steps` at `batch` streams."""
        return torch.empty(self.lib.sl_wavenet_work_bytes(model, batch), dtype=torch.uint8)

    def wavenet_steps(self, model: WaveNet, s: Streams, n: int, step: int, work: torch.Tensor) -> None:
        """n samples for every stream from ring step `step` (see csrc/soundalike.h)."""
        self.lib.sl_wavenet_steps(model, s, n, step, work.data_ptr())


def layout_mismatches(lib: ctypes.CDLL, structs: dict[str, type[ctypes.Structure]]) -> list[str]:
    """The structs whose size or field offsets differ between `lib` (sl_layout) and their ctypes mirror."""
    fn = lib.sl_layout
    fn.argtypes, fn.restype = [ctypes.c_char_p, ctypes.POINTER(_i64), _i32], _i32
    out = (_i64 * 64)()
    bad = []
    for name, cls in structs.items():
        n = fn(name.encode(), out, len(out))
        theirs = list(out[:min(n, len(out))])
        ours = [ctypes.sizeof(cls)] + [getattr(cls, field).offset for field, _ in cls._fields_]
        if theirs != ours:
            bad.append(f"{name} (size, offsets): library {theirs}, kernel.py {ours}")
    return bad


_loaded: dict[str, Kernel | None] = {}


def load() -> Kernel | None:
    """The compiled sampling library, or None (with one warning) when it cannot be built or its structs differ
    from ours. SOUNDALIKE_KERNEL=numpy skips it."""
    if "lib" in _loaded:
        return _loaded["lib"]
    lib = compiler.load("sampling", FALLBACK)
    kernel = None
    if lib is not None:
        bad = layout_mismatches(lib, STRUCTS)
        if bad:
            warnings.warn(f"the compiled sampling library's structs differ from kernel.py's, so it is not used "
                          f"(csrc/soundalike.h and kernel.py must change together): {'; '.join(bad)}; {FALLBACK}",
                          RuntimeWarning, stacklevel=2)
        else:
            kernel = Kernel(lib)
            kernel.set_threads(1, MIN_SPLIT)
    _loaded["lib"] = kernel
    return kernel


def heard_numpy(controls) -> tuple | None:
    """The heard tilt of `controls` (`heads.Controls`, on the CPU) as `mlp_frame_numpy` takes it (None: none);
    the echo shares memory with the controls' own."""
    if not controls.pull.shape[-1]:
        return None
    return (controls.pull.numpy(), controls.echo.numpy(), controls.amp.numpy(), controls.decay.numpy()[0],
            controls.cap.numpy()[0])


def mlp_frame_numpy(tables: np.ndarray, cond: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray,
                    b2: np.ndarray, seq: np.ndarray, pos: int, noise: np.ndarray, temp: np.ndarray,
                    log_floor: np.ndarray, logits_out: np.ndarray | None, bias: np.ndarray | None = None,
                    heard: tuple | None = None) -> None:
    """The same loop as the C++ kernel for a softmax head over at most heads.BYTE_INPUT_LEVELS levels, one
    sample at a time in numpy (the fallback).

    tables (C, Q, D), cond (B, n, D), w1 (D, D), w2 (Q, D), seq (B, L) int64 written at [pos, pos + n),
    noise (B, n, Q) float32 Gumbel, temp and log_floor (B,) float32, logits_out (B, n, Q) or None, bias (B, Q)
    float32 or None, heard None or the heard tilt (pull (B,), echo (B,) updated in place, amp (Q,), all float32,
    decay and cap float32 scalars).
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
        v = logits.astype(np.float32) / temp[:, None]
        if bias is not None:
            v += bias
        if heard is not None:
            pull, echo, amp, decay, cap = heard
            e = decay * echo
            d = amp + e[:, None]
            v += pull[:, None] * np.minimum(d * d, cap)
        keep = v >= v.max(axis=1, keepdims=True) + log_floor[:, None]
        seq[rows, pos + j] = level = np.where(keep, v + noise[:, j], -np.inf).argmax(axis=1)
        if heard is not None:
            echo[:] = amp[level] + e
        if logits_out is not None:
            logits_out[:, j] = logits
