"""WaveNet generation: the fast stepper for the sampling engine, and the two plain generators it is tested against.

Fast WaveNet: a layer of dilation d reads its own input from (k - 1) * d steps ago, so every layer keeps its
past inputs and one new sample costs one step per layer. Here all queues live in one ring buffer
(sum of (k - 1) * d slots, B, residual_channels): at step t, layer l's input from j * d steps ago sits in slot
offset_l + (t - j * d) mod ((k - 1) * d), and the new input overwrites the oldest one. The slot numbers of
every step repeat with period (k - 1) * max(d) and are tabulated once. Because every layer's past inputs are
known when a step starts, their half of the dilated convolutions runs for all layers in one batched matrix
product; only the newest-input half, the gated units and the residual path run layer by layer. The skip
projections of all layers are one matrix product over the concatenated gated outputs.

`reference_generate` runs the model's own plain queues (`WaveNet.step`) one sample at a time, and
`naive_generate` re-runs the full causal forward pass over the receptive field for every sample. All three
follow the randomness contract of `reference.py`, so they produce the same samples for a seed.
"""

from __future__ import annotations

import warnings

import torch

from ...sampling import kernel as _kernel
from ...sampling.engine import stepper_head, stepper_placement, stream_controls, weight, with_compact_weights
from ...sampling.reference import NoiseStream
from ..heads import Controls, pick, split_digits

# c: compiled CPU loop (csrc/wavenet.cpp, through kernel.py); torch: torch ops on any device; graph: those ops
# for `hop` samples captured in one CUDA graph. auto: c on the CPU, torch elsewhere (as for SampleRNN).
BACKENDS = ("auto", "c", "torch", "graph")
# Weights (engine.WEIGHTS) "bf16" / "int8": the stepper is built from `engine.with_compact_weights(model, ...)`
# (the matrices rounded by the rule both families share); the rounded values are stored in the compute dtype,
# so it changes the numbers, not the speed.
HOP = 64  # samples per advance() call: the engine's per-call bookkeeping is paid once per HOP samples


class WaveNetStepper:
    """The step-wise WaveNet for `soundalike.sampling.Sampler` (see `engine.Stepper`)."""

    def __init__(self, model, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 backend: str = "auto", weights: str = "full"):
        self.device, self.dtype = stepper_placement(model, device, dtype, backend, BACKENDS, weights)
        self.weights = weights
        self.backend = self._pick_backend(backend)
        self.threads = 1  # of the compiled loop (the Sampler sets it)
        # With compact weights the queues of the initial history and of a prime come from the rounded model too.
        self.model = model if weights == "full" else with_compact_weights(model, weights)
        model = self.model
        self.q_levels = model.q_levels
        self.hop = HOP
        self.context = 1  # advance() reads only the newest sample: the queues hold everything older
        self.silence = model.q_levels // 2
        k, dils = model.kernel_size, model.dilations
        self.k, self.n_layers = k, len(dils)
        self.R, self.D = model.residual_channels, model.dilation_channels
        self.history = model.receptive_field - 1  # samples before the newest input that the queues cover
        dev, dt = self.device, self.dtype
        with torch.no_grad():
            self.emb = weight(model.embedding.weight, dev, dt)  # (digits * radix, R)
            # The model's own head, already rounded when the model is (with_compact_weights).
            self.head = stepper_head(model.head, dev, dt, "full")
            w = weight(torch.stack([c.weight for c in model.convs]), dev, dt)  # (L, 2D, R, k)
            # Past taps, oldest first, as one (k - 1) * R input per layer: (L, (k - 1) * R, 2D).
            self.w_past = w[..., :-1].permute(0, 3, 2, 1).reshape(self.n_layers, (k - 1) * self.R, -1).contiguous()
            self.w_new = w[..., -1].transpose(1, 2).contiguous()  # (L, R, 2D)
            self.b_conv = weight(torch.stack([c.bias for c in model.convs])[:, None, :], dev, dt)  # (L, 1, 2D)
            self.w_res = [weight(r.weight[:, :, 0].t(), dev, dt) for r in model.residual]  # (D, R) each
            self.w_skip = weight(model.skip.weight[:, :, 0].t(), dev, dt)  # (L * D, S)
            self.b_skip = weight(model.skip.bias, dev, dt)
            self.w_hid = weight(model.out_hidden.weight[:, :, 0].t(), dev, dt)
            self.b_hid = weight(model.out_hidden.bias, dev, dt)
            self.w_out, self.b_out = weight(model.out.weight[:, :, 0].t(), dev, dt), weight(model.out.bias, dev, dt)
        self.digits, self.radix = model.digits, model.radix
        self.digit_rows = torch.arange(self.digits, device=dev) * self.radix
        sizes = [(k - 1) * d for d in dils]
        offsets = torch.tensor([0] + sizes[:-1]).cumsum(0)
        size = torch.tensor(sizes)
        self.period = (k - 1) * max(dils)
        t = torch.arange(self.period)[:, None, None]
        lag = (k - 1 - torch.arange(k - 1))[None, :, None] * torch.tensor(dils)[None, None, :]  # (1, k-1, L)
        # read[t] (L * (k - 1),): slots of every layer's past taps, layer-major, oldest tap first.
        self.read = (offsets + (t - lag) % size).transpose(1, 2).reshape(self.period, -1).to(dev)
        self.write = (offsets + t[:, 0] % size).to(dev)  # (period, L): where each layer's new input goes
        self.slots = sum(sizes)
        self.step_count = 0
        self.batch = 0
        self.ring: torch.Tensor | None = None  # (slots, B, R)
        if self.backend == "c":
            self._c_weights(model, torch.tensor(dils, dtype=torch.int32), offsets)

    def _pick_backend(self, backend: str) -> str:
        if backend == "graph" and self.device.type != "cuda":
            raise ValueError("backend 'graph' (CUDA graphs) needs a CUDA device")
        cpu_ok = self.device.type == "cpu" and self.dtype in (torch.float32, torch.float64)
        if backend == "auto":
            return "c" if cpu_ok and _kernel.load() is not None else "torch"
        if backend == "c" and not cpu_ok:
            raise ValueError("backend 'c' needs float32/float64 on the CPU")
        if backend == "c" and _kernel.load() is None:
            raise RuntimeError("the compiled WaveNet sampling kernel is not available (no C++ compiler?)")
        return backend

    def _c_weights(self, model, dils: torch.Tensor, offsets: torch.Tensor) -> None:
        """The model as the compiled loop reads it (`kernel.WaveNet`); the structs point into tensors that live
        on self."""
        dev, dt, L, k, R, D, Q = self.device, self.dtype, self.n_layers, self.k, self.R, self.D, self.q_levels
        P = self.head.n_params
        S, O = model.skip.out_channels, model.out_hidden.out_channels
        with torch.no_grad():
            w = torch.stack([c.weight for c in model.convs])  # (L, 2D, R, k)
            conv = weight(w.transpose(2, 3).reshape(L, 2 * D, k * R), dev, dt)  # taps oldest first
            res = [weight(r.weight[:, :, 0], dev, dt) for r in model.residual]  # (R, D) each, L - 1 of them
            skip, hid, out = (weight(m.weight[:, :, 0], dev, dt) for m in (model.skip, model.out_hidden, model.out))
            # block-sparse where a pruned model's 16 x 1 blocks are mostly zero (`kernel.block_sparse`)
            conv = [_kernel.block_sparse(c, "full", dt) or c for c in conv]
            res, (skip, hid, out) = [_kernel.block_sparse(r, "full", dt) or r for r in res], \
                [_kernel.block_sparse(m, "full", dt) or m for m in (skip, hid, out)]
        self._c = [*conv, *res, skip, hid, out]
        layers = [_kernel.WaveNetLayer(_kernel.linear(conv[i], self.b_conv[i, 0], 2 * D, k * R),
                                       _kernel.matrix(res[i] if i + 1 < L else None, R, D), int(dils[i]),
                                       int(offsets[i]))
                  for i in range(L)]
        self._c_layers = (_kernel.WaveNetLayer * L)(*layers)
        h = self.head
        fine = None
        if h.kind == "coarse_fine":
            fine = (h.fine.weight.detach().contiguous(), h.fine.bias.detach(), None)
        head, self._head_keep = _kernel.head(h, _kernel.linear(out, self.b_out, P, O), dt, "full", None, fine)
        self._cmodel = _kernel.WaveNet(_kernel.DTYPES[dt], L, k, R, D, Q, self.digits, self.radix,
                                       self.emb.data_ptr(), self._c_layers,
                                       _kernel.linear(skip, self.b_skip, S, L * D),
                                       _kernel.linear(hid, self.b_hid, O, S), head,
                                       None)  # the ring: set by each advance

    # --- state ------------------------------------------------------------------------------------------

    def _fill(self, history: torch.Tensor) -> None:
        """Set the queues from history (B, receptive_field - 1) levels before the newest input."""
        mdev = next(self.model.parameters()).device
        queues = self.model.initial_queues(history.to(mdev))  # per layer (B, R, (k - 1) * d), oldest first
        # With the step counter at 0 the ring slot of each queue entry is its index in the queue.
        self.ring = torch.cat([q.permute(2, 0, 1) for q in queues]).to(self.device, self.dtype).contiguous()
        self.step_count = 0
        self.batch = history.shape[0]
        self._alloc()

    def _alloc(self) -> None:
        B, L = self.batch, self.n_layers
        self.h = torch.empty(L, B, self.R, device=self.device, dtype=self.dtype)  # each layer's input
        self.z = torch.empty(B, L, self.D, device=self.device, dtype=self.dtype)  # each layer's gated output
        if self.backend == "c":
            self._work = _kernel.load().wavenet_work(self._cmodel, B)
        self._graph = None  # captured on the buffers of the moment: capture again

    def reset(self, batch: int) -> None:
        """Queues of `batch` streams that have heard only silence."""
        one = torch.full((1, self.history), self.silence, dtype=torch.long)
        self._fill(one)
        self.ring = self.ring.expand(-1, batch, -1).contiguous()
        self.batch = batch
        self._alloc()

    def prime(self, levels: torch.Tensor) -> None:
        """Teacher-force levels (B, 1 + n): only the last receptive field matters, earlier ones are silence."""
        B = levels.shape[0]
        pad = torch.full((B, self.history), self.silence, dtype=torch.long, device=levels.device)
        history = torch.cat([pad, levels[:, :-1]], dim=1)[:, -self.history:]
        self._fill(history)

    def state(self) -> dict[str, torch.Tensor]:
        """The queues and the step counter (which ring slots hold what) as CPU tensors."""
        return {"ring": self.ring.cpu().clone(), "step": torch.tensor(self.step_count)}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.ring = state["ring"].to(self.device, self.dtype).clone()
        self.step_count = int(state["step"])
        self.batch = self.ring.shape[1]
        self._alloc()

    # --- generation -------------------------------------------------------------------------------------

    @torch.no_grad()
    def advance(self, seq: torch.Tensor, pos: int, noise: torch.Tensor, controls: Controls,
                logits: torch.Tensor | None = None) -> None:
        """Write seq[:, pos:pos + hop] from seq[:, pos - 1] and the queues; noise (B, hop, noise width),
        controls (B,)."""
        if self.backend == "c":
            assert self.ring.is_contiguous()
            self._cmodel.ring = self.ring.data_ptr()
            lib = _kernel.load()
            lib.set_threads(self.threads, -1)
            lib.wavenet_steps(self._cmodel, _kernel.streams(seq, pos, noise, controls, logits), self.hop,
                              self.step_count, self._work)
            self.step_count += self.hop
            return
        if self.backend == "graph" and logits is None:
            return self._advance_graph(seq, pos, noise, controls)
        self._advance_torch(seq, pos, noise, controls, logits, *self._rows(self.step_count % self.period))

    def _rows(self, first: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
        """Ring slots to read (hop, L * (k - 1)) and write (hop, L) for the `hop` steps from step `first`."""
        rows = (first + torch.arange(self.hop, device=self.device)) % self.period
        return self.read.index_select(0, rows), self.write.index_select(0, rows)

    def _advance_torch(self, seq, pos, noise, controls, logits, read, write) -> None:
        for j in range(self.hop):
            params, z = self._step(seq[:, pos + j - 1], read[j], write[j])
            seq[:, pos + j] = self.head.draw(params, z, noise[:, j], controls)
            if logits is not None:
                logits[:, j] = params
        self.step_count += self.hop

    def _advance_graph(self, seq, pos, noise, controls) -> None:
        """`advance` replaying one CUDA graph of `hop` samples (thousands of kernels, one launch).

        The graph works on static buffers: the newest sample, the noise, the temperatures and the step number
        (which ring slots to use) are copied in, the new samples copied out; the ring is updated in place.
        """
        if self._graph is not None and [x.shape for x in self._controls] != [x.shape for x in controls]:
            self._graph = None  # a logit bias or heard tilt came or went: capture again with its buffers
        if self._graph is None:
            self._win = torch.empty((self.batch, 1 + self.hop), dtype=torch.long, device=self.device)
            self._nz = torch.empty_like(noise)
            self._controls = Controls(*(torch.empty_like(x) for x in controls))
            self._first = torch.zeros((), dtype=torch.long, device=self.device)
        self._win[:, 0].copy_(seq[:, pos - 1])
        self._nz.copy_(noise)
        for mine, given in zip(self._controls, controls):
            mine.copy_(given)
        self._first.fill_(self.step_count % self.period)
        step_count = self.step_count

        def body() -> None:
            read, write = self._rows(self._first)
            self._advance_torch(self._win, 1, self._nz, self._controls, None, read, write)

        if self._graph is None:
            # Warm up eagerly on a side stream (library handles, allocator), as capture requires, on a copy of
            # the ring so the real one is untouched; then capture.
            saved = self.ring.clone()
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                body()
            torch.cuda.current_stream(self.device).wait_stream(side)
            self.ring.copy_(saved)
            self._win[:, 0].copy_(seq[:, pos - 1])
            self._controls.echo.copy_(controls.echo)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    body()
            except RuntimeError as e:  # an op that cannot be captured: run eagerly from now on
                warnings.warn(f"CUDA graph capture failed, sampling without graphs: {e}", stacklevel=2)
                self.backend, self.step_count = "torch", step_count
                return self.advance(seq, pos, noise, controls)
            self._graph = graph
        self._graph.replay()
        self.step_count = step_count + self.hop  # the Python side of body() ran at capture, not at replay
        seq[:, pos:pos + self.hop].copy_(self._win[:, 1:])
        controls.echo.copy_(self._controls.echo)  # the heard tilt's state, advanced in the graph's buffer

    def _step(self, level: torch.Tensor, read: torch.Tensor, write: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The newest input level (B,) -> the head's parameters (B, n_params) and features (B, O) of the next
        sample; reads the ring slots `read` (L * (k - 1),) and writes the layers' inputs to slots `write` (L,)."""
        B, L, R, D = self.batch, self.n_layers, self.R, self.D
        past = self.ring.index_select(0, read)  # (L * (k - 1), B, R)
        if self.k > 2:
            past = past.view(L, self.k - 1, B, R).transpose(1, 2).reshape(L, B, (self.k - 1) * R)
        else:
            past = past.view(L, B, R)
        pre = torch.baddbmm(self.b_conv, past, self.w_past)  # (L, B, 2D): every layer's older taps at once
        h, z = self.h, self.z
        if self.digits == 1:
            torch.index_select(self.emb, 0, level, out=h[0])
        else:  # the digits' rows, summed in order
            torch.sum(self.emb[split_digits(level, self.q_levels) + self.digit_rows], dim=1, out=h[0])
        for i in range(L):
            a = torch.addmm(pre[i], h[i], self.w_new[i])  # (B, 2D)
            torch.mul(torch.tanh(a[:, :D]), torch.sigmoid(a[:, D:]), out=z[:, i])
            if i + 1 < L:
                torch.addmm(h[i], z[:, i], self.w_res[i], out=h[i + 1])
        self.ring.index_copy_(0, write, h)
        skip = torch.addmm(self.b_skip, z.view(B, L * D), self.w_skip).relu_()
        hid = torch.addmm(self.b_hid, skip, self.w_hid).relu_()
        return torch.addmm(self.b_out, hid, self.w_out), hid


# --- plain generators, for tests and benchmarks ---------------------------------------------------------


def _start(model, n_samples: int, batch: int, temperature, prime, min_p, bias=None, pull=None, heard=None
           ) -> tuple[torch.Tensor, Controls, int]:
    """History buffer (B, receptive_field + forced + n) of silence and prime, the sampling controls, forced."""
    device = next(model.parameters()).device
    c = stream_controls(temperature, min_p, batch, device, bias, pull, heard)
    forced = 0
    if prime is not None:
        prime = torch.as_tensor(prime, dtype=torch.long).to(device)
        prime = prime.expand(batch, -1) if prime.dim() == 1 else prime
        forced = prime.shape[1]
    lookback = model.receptive_field
    seq = torch.full((batch, lookback + forced + n_samples), model.q_levels // 2, dtype=torch.long, device=device)
    if prime is not None:
        seq[:, lookback:lookback + forced] = prime
    return seq, c, forced


@torch.no_grad()
def reference_generate(model, n_samples: int, batch: int = 1, temperature: float | torch.Tensor = 1.0,
                       seed: int = 0, prime: torch.Tensor | None = None,
                       min_p: float | torch.Tensor = 0.0, bias: torch.Tensor | None = None, pull=None,
                       heard=None) -> torch.Tensor:
    """(B, n_samples) levels from silence (after `prime` (T,) or (B, T) levels), through `WaveNet.step`."""
    model.eval()
    seq, c, forced = _start(model, n_samples, batch, temperature, prime, min_p, bias, pull, heard)
    lookback = model.receptive_field
    noise = NoiseStream(batch, model.head.noise_width, seed, uniform=model.head.uniform)
    queues = model.initial_queues(seq[:, 1:lookback])  # the silence before the newest input seq[:, lookback - 1]
    for pos in range(lookback, seq.shape[1]):
        params, z = model.step(seq[:, pos - 1], queues)
        if pos < lookback + forced:  # the prime is teacher-forced: no noise drawn for it
            continue
        seq[:, pos] = model.head.draw(params, z, noise.next().to(seq.device), c)
    return seq[:, lookback + forced:]


@torch.no_grad()
def naive_generate(model, n_samples: int, batch: int = 1, temperature: float | torch.Tensor = 1.0,
                   seed: int = 0, prime: torch.Tensor | None = None,
                   min_p: float | torch.Tensor = 0.0) -> torch.Tensor:
    """The same samples as `reference_generate` (softmax heads), re-running the causal forward pass over the
    receptive field for every sample (what generation costs without queues)."""
    model.eval()
    assert model.head.kind == "softmax", "naive_generate draws from the logits alone"
    seq, c, forced = _start(model, n_samples, batch, temperature, prime, min_p)
    lookback = model.receptive_field
    noise = NoiseStream(batch, model.head.noise_width, seed)
    for pos in range(lookback + forced, seq.shape[1]):
        logits, _ = model(seq[:, pos - lookback:pos + 1])  # the one target seq[:, pos]
        seq[:, pos] = pick(logits[:, 0], c, noise.next().to(seq.device))
    return seq[:, lookback + forced:]
