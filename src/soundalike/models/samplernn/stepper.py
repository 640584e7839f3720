"""SampleRNN stepper for the sampling engine: folded weights, tiers once per frame, a compiled CPU loop.

At construction every weight the generator needs is read once from the model (weight norm folded into
plain matrices, the sample-level embedding and input layer folded into per-position tables). Per top frame
of `lookback` samples, each frame tier runs once per its own frame for all streams together, and the
samples of each bottom frame are drawn one by one with the Gumbel-max rule. On the CPU both are compiled
code (`csrc/samplernn.cpp` through `kernel.py`: one foreign call per top frame; numpy for the samples when
there is no compiler); elsewhere they are torch ops (no host-device sync: the samples stay on the device),
optionally captured in a CUDA graph.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from ...sampling import kernel as _kernel
from ...sampling.engine import (
    compact,
    quantize_int8,
    stepper_head,
    stepper_placement,
    weight,
    with_compact_weights,
)
from ..heads import BYTE_INPUT_LEVELS, Controls, split_digits

# c: compiled CPU loop; numpy: its fallback; torch: torch ops on any device; graph: those ops captured in a
# CUDA graph per top frame. auto: c on the CPU, torch elsewhere.
BACKENDS = ("auto", "c", "numpy", "torch", "graph")
# Weights (engine.WEIGHTS) "bf16" / "int8": the matrices rounded to bfloat16 / quantized to int8 with a scale
# per row, and stored so by the compiled loop (1/2 / 1/4 of the memory traffic, which bounds batch-1 speed);
# arithmetic still in the compute dtype. Other backends compute with the same rounded values.
SPARSE_MAX_BATCH = 2  # up to this many streams the compiled head skips zero inputs per stream (measured)


class _Tier:
    """Plain tensors of one frame tier."""

    def __init__(self, tier, device, dtype):
        self.frame, self.ratio, self.n_rnn, self.lstm, self.skip = (
            tier.frame_size, tier.ratio, tier.n_rnn, tier.lstm, tier.skip)
        self.w_in, self.b_in = weight(tier.input_proj.weight, device, dtype), weight(tier.input_proj.bias, device, dtype)
        self.layers = []  # (w_ih, w_hh, b_ih, b_hh) per layer, bottom first
        for rnn in tier.rnns:
            for k in range(rnn.num_layers):
                self.layers.append(tuple(weight(getattr(rnn, f"{name}_l{k}"), device, dtype)
                                         for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
        if self.skip:
            self.w_skip, self.b_skip = weight(tier.skip_proj.weight, device, dtype), weight(tier.skip_proj.bias, device, dtype)
        self.w_up, self.b_up = weight(tier.upsample.weight, device, dtype), weight(tier.upsample.bias, device, dtype)
        self.h0 = weight(tier.h0, device, dtype)  # (n_states, n_rnn, 1, dim)


class SampleRNNStepper:
    """The step-wise SampleRNN for `soundalike.sampling.Sampler` (see `engine.Stepper`)."""

    def __init__(self, model, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 backend: str = "auto", weights: str = "full"):
        self.device, self.dtype = stepper_placement(model, device, dtype, backend, BACKENDS, weights)
        self.weights = weights
        self.model = model
        self.q_levels, self.dim = model.q_levels, model.dim
        self.frame_sizes, self.tier_frames = list(model.frame_sizes), list(model.tier_frames)
        self.context = self.hop = model.lookback
        self.silence = model.q_levels // 2
        with torch.no_grad():
            self.tiers = [_Tier(t, self.device, self.dtype) for t in model.tiers]
            mlp = model.mlp
            self.tables = weight(mlp.input_tables(), self.device, self.dtype)  # (context, Q, dim)
            self.w1, self.b1 = weight(mlp.hidden.weight, self.device, self.dtype), weight(mlp.hidden.bias, self.device, self.dtype)
            self.w2, self.b2 = weight(mlp.output.weight, self.device, self.dtype), weight(mlp.output.bias, self.device, self.dtype)
            self.head = stepper_head(mlp.head, self.device, self.dtype, weights)
        self.n_params = self.head.n_params
        self.digits, self.radix = mlp.digits, mlp.radix
        # The table rows of position p's digits start at p * digits * radix (+ k * radix for digit k).
        self.offsets = (torch.arange(self.frame_sizes[0], device=self.device)[:, None] * self.digits
                        + torch.arange(self.digits, device=self.device)) * self.radix  # (fs, digits)
        self.backend = self._pick_backend(backend)
        self.threads = 1  # of the compiled loop (the Sampler sets it)
        self.fine_w = self.fine_wt = None  # a coarse_fine head's fine matrix as the compiled loop stores it
        if self.backend == "c":
            self._store_matrices(mlp.head)
        elif weights != "full":
            self._compact_matrices()
        # Levels -> grid in the model's own precision (bf16 would round large level numbers).
        self._grid_dtype = self.dtype if self.dtype in (torch.float32, torch.float64) else torch.float32
        self.states: list = []
        self.batch = 0

    def _compact_matrices(self) -> None:
        """The backends other than the compiled loop compute with the rounded values (`engine.compact`) of
        every weight matrix `engine.with_compact_weights` rounds, in their own dtype."""
        def stored(w: torch.Tensor) -> torch.Tensor:
            return compact(w, self.weights).contiguous()

        for t in self.tiers:
            t.w_in, t.w_up = stored(t.w_in), stored(t.w_up)
            t.layers = [(stored(w_ih), stored(w_hh), b_ih, b_hh) for w_ih, w_hh, b_ih, b_hh in t.layers]
            if t.skip:
                t.w_skip = stored(t.w_skip)
        self.w1, self.w2 = stored(self.w1), stored(self.w2)

    def _store_matrices(self, head) -> None:
        """Every weight matrix as the compiled loop stores it: in the compute dtype, as bfloat16 (widened
        exactly on load) or as int8 with its float32 scales (`kernel.pack_int8`); block-sparse (`kernel.Blocks`)
        where enough of its 16 x 1 blocks are zero (a pruned model, `soundalike.sparsity`). The sample-level
        matrices also transposed, for the per-stream products that skip zero inputs, unless block-sparse."""
        w = self.weights

        def dense(m: torch.Tensor) -> torch.Tensor:
            if w == "bf16":
                return m.to(torch.bfloat16).contiguous()
            if w == "int8":
                return _kernel.pack_int8(*quantize_int8(m))
            return m.contiguous()

        def stored(m: torch.Tensor):
            return _kernel.block_sparse(m, w, self.dtype) or dense(m)

        def transposed(m: torch.Tensor, s) -> torch.Tensor | None:
            if isinstance(s, _kernel.Blocks):
                return None
            if w == "int8":  # one scale per output: a column of the transposed matrix
                q, scale = quantize_int8(m)
                return _kernel.pack_int8(q.t(), scale)
            return dense(m.t())

        for t in self.tiers:
            t.w_in, t.w_up = stored(t.w_in), stored(t.w_up)
            t.layers = [(stored(w_ih), stored(w_hh), b_ih, b_hh) for w_ih, w_hh, b_ih, b_hh in t.layers]
            if t.skip:
                t.w_skip = stored(t.w_skip)
        w1, w2 = self.w1, self.w2
        self.w1, self.w2 = stored(w1), stored(w2)
        self.w1t, self.w2t = transposed(w1, self.w1), transposed(w2, self.w2)
        if self.head.kind == "coarse_fine":
            fine = weight(head.fine.weight, self.device, self.dtype)
            self.fine_w = stored(fine)
            self.fine_wt = transposed(fine, self.fine_w)

    def stored_bytes(self) -> dict[str, float]:
        """Bytes of weights the compiled loop reads per sample, by part: `tiers` (each tier's matrices once per
        its frame), `mlp` (the sample-level hidden layer and the head's matrices, every sample) and `tables` (the
        rows of the folded input tables it gathers, every sample)."""
        tiers = 0.0
        for t in self.tiers:
            mats = [t.w_in, t.w_up, *(m for layer in t.layers for m in layer[:2])] + ([t.w_skip] if t.skip else [])
            tiers += sum(_kernel.stored_bytes(m) for m in mats) / t.frame
        mlp = sum(_kernel.stored_bytes(m) for m in (self.w1, self.w2, self.fine_w))
        tables = self.frame_sizes[0] * self.digits * self.dim * self.tables.element_size()
        return {"tiers": tiers, "mlp": float(mlp), "tables": float(tables)}

    def _pick_backend(self, backend: str) -> str:
        cpu_ok = self.device.type == "cpu" and self.dtype in (torch.float32, torch.float64)
        numpy_ok = self.head.kind == "softmax" and self.digits == 1
        if backend == "graph" and self.device.type != "cuda":
            raise ValueError("backend 'graph' (CUDA graphs) needs a CUDA device")
        if backend == "numpy" and not numpy_ok:
            raise ValueError("backend 'numpy' draws from a softmax head over at most "
                             f"{BYTE_INPUT_LEVELS} levels only")
        if backend == "auto":
            if not cpu_ok:
                return "torch"
            return "c" if _kernel.load() is not None else "numpy" if numpy_ok else "torch"
        if backend in ("c", "numpy") and not cpu_ok:
            raise ValueError(f"backend {backend!r} needs float32/float64 on the CPU")
        if backend == "c" and _kernel.load() is None:
            raise RuntimeError("the compiled sampling kernel is not available (no C++ compiler?)")
        return backend

    # --- state ------------------------------------------------------------------------------------------

    def reset(self, batch: int) -> None:
        """The model's initial state for `batch` streams."""
        self.batch = batch
        self.states = []
        for t in self.tiers:
            # A copy, also at batch 1: the state is updated in place and t.h0 may be the model's parameter.
            # (n_states, n_rnn, B, dim)
            h0 = t.h0.expand(-1, -1, batch, -1).clone(memory_format=torch.contiguous_format)
            self.states.append(h0)
        self._alloc()

    def _alloc(self) -> None:
        self._graph = None  # captured on the state tensors of the moment: capture again
        if self.backend == "c":
            self._lib = _kernel.load()
            self._c_model()
            self._work = self._lib.samplernn_work(self._cmodel, self.batch)
        elif self.backend == "numpy":
            self._np = {k: getattr(self, k).numpy() for k in ("tables", "w1", "b1", "w2", "b2")}

    def _c_model(self) -> None:
        """The model as the compiled loop reads it (`kernel.SampleRNN`), with this batch's state and
        conditioning buffers; the structs point into tensors that live on self."""
        B, D, Q, w = self.batch, self.dim, self.q_levels, self.weights
        assert self.tiers[-1].frame == self.hop  # a call draws one top frame
        tiers, self._cond, self._keep = [], [], []
        for t, state in zip(self.tiers, self.states):
            assert state.is_contiguous()
            gates = (4 if t.lstm else 3) * D
            cond = torch.empty(B, t.ratio, D, dtype=self.dtype)
            layers = (_kernel.RnnLayer * t.n_rnn)(*[
                _kernel.RnnLayer(_kernel.linear(w_ih, b_ih, gates, D, w), _kernel.linear(w_hh, b_hh, gates, D, w))
                for w_ih, w_hh, b_ih, b_hh in t.layers])
            skip = (t.w_skip, t.b_skip) if t.skip else (None, None)
            self._cond.append(cond)
            self._keep.append(layers)
            tiers.append(_kernel.Tier(t.frame, t.ratio, int(t.lstm), t.n_rnn,
                                      _kernel.linear(t.w_in, t.b_in, D, t.frame, w), layers,
                                      _kernel.linear(*skip, D, t.n_rnn * D, w),
                                      _kernel.linear(t.w_up, t.b_up, t.ratio * D, D, w), state.data_ptr(),
                                      cond.data_ptr()))
        self._c_tiers = (_kernel.Tier * len(tiers))(*tiers)
        fine = None if self.fine_w is None else (self.fine_w, self.head.fine.bias.detach(), self.fine_wt)
        head, self._head_keep = _kernel.head(self.head, _kernel.linear(self.w2, self.b2, self.n_params, D, w),
                                             self.dtype, w, self.w2t, fine)
        self._cmodel = _kernel.SampleRNN(
            _kernel.DTYPES[self.dtype], _kernel.WEIGHTS[w], Q, D, len(tiers), int(B <= SPARSE_MAX_BATCH),
            self.digits, self.radix, self._c_tiers, self.tables.data_ptr(),
            _kernel.linear(self.w1, self.b1, D, D, w), _kernel.matrix(self.w1t, D, D, w), head)

    def state(self) -> dict[str, torch.Tensor]:
        """The recurrent state (between top frames) as CPU tensors."""
        return {f"tier{k}": s.cpu().clone() for k, s in enumerate(self.states)}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.states = [state[f"tier{k}"].to(self.device, self.dtype).clone().contiguous()
                       for k in range(len(self.tiers))]
        self.batch = self.states[0].shape[2]
        self._alloc()

    @torch.no_grad()
    def prime(self, levels: torch.Tensor) -> None:
        """Teacher-force levels (B, context + k * hop) from the initial state through the model itself."""
        B, total = levels.shape
        L = self.context
        assert total > L and (total - L) % L == 0, f"prime length {total} must be {L} + a multiple of {L}"
        state = None
        chunk = L * max(1, 16384 // L)  # bounded memory for long primes (the forward also makes logits)
        x = levels.to(next(self.model.parameters()).device)
        # What advance computes (a rounded copy, made only while priming).
        model = self.model if self.weights == "full" else with_compact_weights(self.model, self.weights)
        for start in range(0, total - L, chunk):
            _, state = model(x[:, start:start + L + min(chunk, total - L - start)], state)
        self.batch = B
        self.states = []
        for s in state:
            s = torch.stack(s) if isinstance(s, tuple) else s[None]  # (n_states, n_rnn, B, dim)
            self.states.append(s.to(self.device, self.dtype).clone().contiguous())
        self._alloc()

    # --- generation -------------------------------------------------------------------------------------

    def _tier_step(self, k: int, seq: torch.Tensor, pos: int, upper: torch.Tensor | None) -> torch.Tensor:
        """Tier k on the frame ending before `pos` -> conditioning (B, ratio, dim); updates its state."""
        t, state = self.tiers[k], self.states[k]
        half = self.q_levels // 2
        grid = (seq[:, pos - t.frame:pos].to(self._grid_dtype) - half) / half  # the model's to_grid
        grid = grid.to(self.dtype)
        x = F.linear(grid, t.w_in, t.b_in)
        if upper is not None:
            x = x + upper
        outs = []
        for i, (w_ih, w_hh, b_ih, b_hh) in enumerate(t.layers):
            if t.lstm:
                h, c = torch.lstm_cell(x, (state[0, i], state[1, i]), w_ih, w_hh, b_ih, b_hh)
                state[1, i] = c
            else:
                h = torch.gru_cell(x, state[0, i], w_ih, w_hh, b_ih, b_hh)
            state[0, i] = h
            outs.append(h)
            x = h
        out = F.linear(torch.cat(outs, dim=-1), t.w_skip, t.b_skip) if t.skip else x
        return F.linear(out, t.w_up, t.b_up).view(-1, t.ratio, self.dim)

    @torch.no_grad()
    def advance(self, seq: torch.Tensor, pos: int, noise: torch.Tensor, controls: Controls,
                logits: torch.Tensor | None = None) -> None:
        """Write seq[:, pos:pos + hop] from seq[:, pos - context:pos]; noise (B, hop, noise width), controls (B,)."""
        if self.backend == "c":
            return self._advance_c(seq, pos, noise, controls, logits)
        if self.backend == "graph" and logits is None:
            return self._advance_graph(seq, pos, noise, controls)
        self._advance_torch(seq, pos, noise, controls, logits)

    def _advance_torch(self, seq, pos, noise, controls, logits) -> None:
        fs, n_tiers = self.frame_sizes[0], len(self.tiers)
        conds: list = [None] * n_tiers
        for t in range(0, self.hop, fs):
            for k in reversed(range(n_tiers)):
                n = self.tier_frames[k]
                if t % n:
                    continue
                upper = None
                if k + 1 < n_tiers:
                    upper = conds[k + 1][:, (t // n) % self.frame_sizes[k + 1]]
                conds[k] = self._tier_step(k, seq, pos + t, upper)
            out = None if logits is None else logits[:, t:t + fs]
            self._sample_frame(seq, pos + t, conds[0], noise[:, t:t + fs], controls, out)

    def _advance_graph(self, seq, pos, noise, controls) -> None:
        """`advance` replaying one CUDA graph of a whole top frame (hundreds of kernels, one launch).

        The graph works on static buffers: the history window, the noise and the temperatures are copied
        in, the new samples copied out; the recurrent state is updated in place.
        """
        C, hop = self.context, self.hop
        if self._graph is not None and [x.shape for x in self._controls] != [x.shape for x in controls]:
            self._graph = None  # a logit bias or heard tilt came or went: capture again with its buffers
        if self._graph is None:
            self._win = torch.empty((self.batch, C + hop), dtype=torch.long, device=self.device)
            self._nz = torch.empty_like(noise)
            self._controls = Controls(*(torch.empty_like(x) for x in controls))
        self._win[:, :C].copy_(seq[:, pos - C:pos])
        self._nz.copy_(noise)
        for mine, given in zip(self._controls, controls):
            mine.copy_(given)
        if self._graph is None:
            # Warm up eagerly on a side stream (library handles, allocator), as capture requires, on copies
            # of the state so the real state is untouched; then capture.
            saved = [st.clone() for st in self.states]
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self._advance_torch(self._win, C, self._nz, self._controls, None)
            torch.cuda.current_stream(self.device).wait_stream(side)
            for st, sv in zip(self.states, saved):
                st.copy_(sv)
            self._win[:, :C].copy_(seq[:, pos - C:pos])
            self._controls.echo.copy_(controls.echo)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    self._advance_torch(self._win, C, self._nz, self._controls, None)
            except RuntimeError as e:  # an op that cannot be captured: run eagerly from now on
                warnings.warn(f"CUDA graph capture failed, sampling without graphs: {e}", stacklevel=2)
                self.backend = "torch"
                return self._advance_torch(seq, pos, noise, controls, None)
            self._graph = graph
        self._graph.replay()
        seq[:, pos:pos + hop].copy_(self._win[:, C:])
        controls.echo.copy_(self._controls.echo)  # the heard tilt's state, advanced in the graph's buffer

    def _advance_c(self, seq, pos, noise, controls, logits) -> None:
        """`advance` in one foreign call: every tier step and sample of the top frame in compiled code."""
        self._lib.set_threads(self.threads, -1)
        self._lib.samplernn_top_frame(self._cmodel, _kernel.streams(seq, pos, noise, controls, logits),
                                      self._work)

    def _sample_frame(self, seq, pos, cond, noise, controls, logits) -> None:
        """Draw seq[:, pos:pos + fs] one sample at a time; cond (B, fs, dim)."""
        if self.backend == "numpy":
            p = self._np
            _kernel.mlp_frame_numpy(p["tables"], cond.numpy(), p["w1"], p["b1"], p["w2"], p["b2"], seq.numpy(),
                                    pos, noise.numpy(), controls.temperature.numpy(), controls.log_floor.numpy(),
                                    None if logits is None else logits.numpy(),
                                    controls.bias.numpy() if controls.bias.shape[-1] else None,
                                    _kernel.heard_numpy(controls))
        else:
            self._sample_frame_torch(seq, pos, cond, noise, controls, logits)

    def _sample_frame_torch(self, seq, pos, cond, noise, controls, logits) -> None:
        fs = self.frame_sizes[0]
        flat = self.tables.view(-1, self.dim)
        for j in range(fs):
            idx = (split_digits(seq[:, pos + j - fs:pos + j], self.q_levels) + self.offsets).flatten(1)
            h = F.relu(F.embedding_bag(idx, flat, mode="sum") + cond[:, j])  # (B, dim)
            z = F.relu(torch.addmm(self.b1, h, self.w1.t()))
            params = torch.addmm(self.b2, z, self.w2.t())
            seq[:, pos + j] = self.head.draw(params, z, noise[:, j], controls)
            if logits is not None:
                logits[:, j] = params
