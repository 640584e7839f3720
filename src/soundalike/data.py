"""Training data: one split of a sliced dataset as a memory-mapped array of levels, and batches from it.

Batch convention (the models rely on it)
----------------------------------------
Every batch holds `x`, a (B, lookback + T) int64 tensor of quantizer levels, one row per stream:

    x[:, :lookback]   context: the `lookback` samples just before this window's targets
    x[:, lookback:]   the T targets, (B, T)

A model predicts the targets from `x[:, :-1]`, (B, lookback + T - 1): target `x[:, lookback + t]` may
depend on `x[:, : lookback + t]` only. Context that lies before the start of a chunk is
`quantizer.silence`, so the first window of a chunk looks like audio that begins after silence.

Training (`TBPTTLoader`, truncated backpropagation through time): each of the B streams walks one chunk in
consecutive windows whose targets follow one another with no gap, so window k + 1 repeats the last
`lookback` samples of window k as its context. The model carries its recurrent state from one batch to
the next and resets it for the streams where `reset` (B,) is true: those start a new chunk. Loaders made
`with_levels` add `level` (B,): the level of the coming second of each stream's chunk from the window's first
target (`soundalike.loudness`).

Evaluation (`eval_batches`): every sample of the split is a target exactly once; `mask` (B, T) marks the
real targets (padding past the end of a chunk and empty streams are false).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import soundfile as sf
import torch
from numpy.lib.stride_tricks import sliding_window_view

from . import loudness
from .atomic import atomic_path
from .dataset import MANIFEST, SLICE_HINT, Manifest
from .emphasis import Emphasis, decode
from .errors import UserError
from .quantize import Quantizer

# Part of the cache key: bump it when the cache layout changes so old caches are rebuilt, not misread.
CACHE_VERSION = b"soundalike-data-cache-1"
CACHE_NAME = re.compile(r"(?:train|valid|test)-(?:linear|mulaw)\d+(?:-e[0-9.e-]+)?-([0-9a-f]{16})\.npy")


class Batch(NamedTuple):
    x: torch.Tensor  # (B, lookback + T) int64 levels; the targets are x[:, lookback:]
    reset: torch.Tensor  # (B,) bool: the stream starts a new chunk, so its recurrent state must be reset
    level: torch.Tensor | None = None  # (B,) float32 dBFS of the coming second (loaders `with_levels`)


class EvalBatch(NamedTuple):
    x: torch.Tensor  # (B, lookback + T) int64 levels; the targets are x[:, lookback:]
    reset: torch.Tensor  # (B,) bool: the stream starts a new chunk
    mask: torch.Tensor  # (B, T) bool: which targets are real samples (the rest is padding)
    level: torch.Tensor | None = None  # (B,) float32 dBFS of the coming second (`with_levels`)


class AudioDataset:
    """One split of a sliced dataset, gain applied, pre-emphasized (`quantizer.pre_emphasis`, each chunk from
    silence) and quantized, as one contiguous memory-mapped array."""

    def __init__(self, root: str | Path, quantizer: Quantizer, split: str) -> None:
        self.root = Path(root)
        self.quantizer = quantizer
        self.split = split
        manifest = Manifest.load(self.root)
        chunks = manifest.split(split)
        self.sample_rate, self.gain = manifest.sample_rate, manifest.gain
        self.files = [c.path for c in chunks]
        self.lengths = np.array([c.samples for c in chunks], dtype=np.int64)
        if self.lengths.sum() == 0:
            raise UserError(
                f"{self.root / MANIFEST}: the {split!r} split has no audio; slice more recordings "
                "or give this split a larger fraction"
            )
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)

        # The manifest bytes pin down every chunk file and the gain; the name adds split, quantizer and the
        # pre-emphasis (exactly, by repr; none when off, so the caches made before it existed still serve).
        self.manifest_sha = hashlib.sha256(CACHE_VERSION + manifest.raw).hexdigest()
        emphasis = f"-e{quantizer.pre_emphasis!r}" if quantizer.pre_emphasis else ""
        name = f"{split}-{quantizer.kind}{quantizer.levels}{emphasis}-{self.manifest_sha[:16]}"
        self.key = f"{name}-{self.manifest_sha}"  # identifies the exact data, for loader checkpoints
        self.cache_path = self.root / "cache" / f"{name}.npy"
        self.data: np.ndarray = self._open_cache()  # (N,) memmap of quantizer.dtype

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __repr__(self) -> str:
        return (f"AudioDataset({str(self.root)!r}, {self.split}, {len(self.lengths)} chunks, "
                f"{len(self)} samples, {self.quantizer.kind}{self.quantizer.levels}, "
                f"pre-emphasis {self.quantizer.pre_emphasis:g})")

    @functools.cached_property
    def _energies(self) -> tuple[np.ndarray, np.ndarray]:
        """Every chunk's `loudness.block_energies` of its audio at the dataset's gain, read back from the levels
        (de-emphasized), one after the other, and where each chunk's begin."""
        cums = [loudness.block_energies(decode(self.chunk(i), self.quantizer)[0]) for i in range(len(self.lengths))]
        first = np.concatenate([[0], np.cumsum([len(c) for c in cums])[:-1]]).astype(np.int64)
        return np.concatenate(cums), first

    def window_levels(self, chunks: np.ndarray, pos: np.ndarray) -> torch.Tensor:
        """(B,) float32 dBFS: the level of the coming `loudness.SPAN_SECONDS` of chunk `chunks[b]` from sample
        `pos[b]` (`loudness.span_db`): what a model with a level input is told of a window whose first target
        is that sample."""
        cum, first = self._energies
        span = round(loudness.SPAN_SECONDS * self.sample_rate)
        return torch.from_numpy(loudness.span_db(cum, first[chunks], self.lengths[chunks], np.asarray(pos), span))

    def _chunk_energies(self) -> np.ndarray:
        """(chunks,) float64: each chunk's energy (sum of squares) as `window_levels` reads it."""
        cum, first = self._energies
        return cum[first + -(-self.lengths // loudness.BLOCK)] - cum[first]

    @property
    def levels_db(self) -> np.ndarray:
        """(chunks,) float32: each chunk's RMS level in dBFS, as `window_levels` reads it."""
        return loudness.energy_db(self._chunk_energies(), self.lengths).astype(np.float32)

    @functools.cached_property
    def level_db(self) -> float:
        """The split's RMS level in dBFS, all chunks together (their energy over their samples). Every checkpoint
        records it, so it is one pass over the levels, read once, without `_energies`' per-block sums (which
        only a model with a level input needs)."""
        energy = sum(float(np.sum(np.square(decode(self.chunk(i), self.quantizer)[0], dtype=np.float64)))
                     for i in range(len(self.lengths)))
        return float(loudness.energy_db(energy, self.lengths.sum()))

    def chunk(self, i: int) -> np.ndarray:
        """The levels of chunk i (manifest order within the split), a (length,) view of the memmap."""
        return self.data[self.starts[i]: self.starts[i] + self.lengths[i]]

    def _open_cache(self) -> np.ndarray:
        total = int(self.lengths.sum())
        if self.cache_path.is_file():
            with contextlib.suppress(ValueError, OSError):
                data = np.load(self.cache_path, mmap_mode="r")
                if data.dtype == self.quantizer.dtype and data.shape == (total,):
                    return data
        self._build_cache(total)
        return np.load(self.cache_path, mmap_mode="r")

    def _build_cache(self, total: int) -> None:
        # Written through a memmap one chunk at a time, so building needs memory for one chunk only.
        emphasis, clipped = Emphasis(self.quantizer.pre_emphasis), 0
        with atomic_path(self.cache_path, suffix=".npy") as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=self.quantizer.dtype, shape=(total,))
            for path, start, n in zip(self.files, self.starts, self.lengths):
                audio, _ = emphasis.emphasize(self._read_chunk(path, int(n)).astype(np.float64) * self.gain)
                if not emphasis.off:
                    clipped += int(np.count_nonzero(np.abs(audio) > 1))
                out[start: start + n] = self.quantizer.quantize(audio)
            out.flush()
            del out
        if clipped:
            print(f"{self.root}: pre-emphasis {emphasis.a:g} took {clipped} of the {total} samples of the "
                  f"{self.split} split outside [-1, 1]; they are clipped (tools/emphasis_headroom.py measures "
                  "what that costs)", file=sys.stderr)
        # Caches of older manifests (any split or quantizer) would only fill the disk: no one can ask for them.
        for old in self.cache_path.parent.iterdir():
            m = CACHE_NAME.fullmatch(old.name)
            if m and m.group(1) != self.manifest_sha[:16]:
                with contextlib.suppress(OSError):
                    old.unlink()

    def _read_chunk(self, path: Path, samples: int) -> np.ndarray:
        if not path.is_file():
            raise UserError(f"chunk file {path} listed in the manifest is missing; {SLICE_HINT} again")
        try:
            audio, sr = sf.read(path, dtype="float32", always_2d=False)
        except (RuntimeError, sf.SoundFileError) as e:
            raise UserError(f"cannot read chunk file {path} ({e}); {SLICE_HINT} again") from e
        channels = 1 if audio.ndim == 1 else audio.shape[1]
        if channels != 1 or sr != self.sample_rate or audio.shape[0] != samples:
            raise UserError(
                f"chunk file {path} is {audio.shape[0]} samples, {channels} channel(s) at {sr} Hz, "
                f"but the manifest says {samples} samples, mono at "
                f"{self.sample_rate} Hz; {SLICE_HINT} again"
            )
        return audio


def shard(num_chunks: int, rank: int, world_size: int) -> np.ndarray:
    """Indices of the chunks that rank `rank` of `world_size` uses (i % world_size == rank), ascending."""
    if not 0 <= rank < world_size:
        raise ValueError(f"expected 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return np.arange(rank, num_chunks, world_size, dtype=np.int64)


def _check_shape(batch_size: int, seq_len: int, lookback: int) -> None:
    if batch_size < 1 or seq_len < 1 or lookback < 0:
        raise UserError(
            f"data: need batch_size >= 1, seq_len >= 1 and lookback >= 0, got batch_size={batch_size}, "
            f"seq_len={seq_len}, lookback={lookback}"
        )


def _gather(data: np.ndarray, base: np.ndarray, length: np.ndarray, first: np.ndarray, width: int,
            silence: int) -> np.ndarray:
    """Windows of `width` samples starting at chunk position `first` (B,) -> (B, width) int64 levels.

    `base` (B,) and `length` (B,) locate each row's chunk in `data`; positions outside it are silence.
    """
    start = base + first  # (B,) where each row begins in `data`
    if data.shape[0] >= width:
        # Rows are contiguous, so a window view turns the gather into B row copies (an element-wise
        # fancy index over B * width positions is several times slower).
        x = sliding_window_view(data, width)[np.clip(start, 0, data.shape[0] - width)].astype(np.int64)
        edge = np.flatnonzero((first < 0) | (first + width > length))
    else:
        x = np.empty((base.shape[0], width), dtype=np.int64)
        edge = np.arange(base.shape[0])
    if edge.size:  # rows reaching past their chunk: the first window of a chunk, the tail in evaluation
        rel = first[edge, None] + np.arange(width)  # (E, width) positions within the chunk
        inside = (rel >= 0) & (rel < length[edge, None])
        x[edge] = np.where(inside, data[np.where(inside, base[edge, None] + rel, 0)], silence)
    return x


class TBPTTLoader:
    """Infinite iterator of `Batch` for truncated BPTT: B streams, each walking one chunk window by window.

    A stream starts a chunk at a random offset p in [0, seq_len) and yields windows whose targets are
    samples [p + k*T, p + (k+1)*T) of the chunk until fewer than T remain; then it takes the next chunk.
    Chunks are dealt from a shuffled deck (each chunk once per pass), only those with at least T samples,
    and p is drawn below min(T, length - T + 1) so every chunk yields at least one window.
    Rank r of world_size uses chunks i % world_size == r and its own random streams. Deterministic given
    (seed, rank); `state_dict()` captures this rank's position so a resumed run sees the same batches.
    `pin_memory=True` pins `x` for asynchronous copies to a GPU (it needs CUDA).
    """

    def __init__(self, dataset: AudioDataset, batch_size: int, seq_len: int, lookback: int, seed: int,
                 rank: int = 0, world_size: int = 1, pin_memory: bool = False, with_levels: bool = False,
                 gain_db: float = 0.0) -> None:
        _check_shape(batch_size, seq_len, lookback)
        if seed < 0:
            raise UserError(f"data: seed must be >= 0, got {seed}")
        self.dataset = dataset
        self.batch_size, self.seq_len, self.lookback = batch_size, seq_len, lookback
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.pin_memory = pin_memory
        self.with_levels = with_levels
        self.gain_db = float(gain_db)  # each chunk dealt is played 0 to gain_db dB quieter (`train.level_augment`)
        mine = shard(len(dataset.lengths), rank, world_size)
        if mine.size == 0:
            raise UserError(
                f"{dataset.root}: the {dataset.split} split has {len(dataset.lengths)} chunk(s), too few for "
                f"{world_size} processes (rank {rank} gets none); use fewer processes or slice more audio"
            )
        self._chunks = mine[dataset.lengths[mine] >= seq_len]
        if self._chunks.size == 0:
            raise UserError(
                f"{dataset.root}: every {dataset.split} chunk of rank {rank} is shorter than seq_len={seq_len} "
                "samples; lower seq_len or slice longer chunks"
            )
        # Two generators, so the order of draws between them does not matter (the reference loop interleaves
        # them per stream, the fast path draws all chunks then all offsets).
        deck_seed, offset_seed, gain_seed = np.random.SeedSequence([seed, rank]).spawn(3)  # the first two as ever
        self._deck_rng = np.random.default_rng(deck_seed)
        self._offset_rng = np.random.default_rng(offset_seed)
        self._gain_rng = np.random.default_rng(gain_seed)
        self._deck = np.zeros(0, dtype=np.int64)
        self._cursor = 0
        self._chunk = np.full(batch_size, -1, dtype=np.int64)  # -1: the stream has no chunk yet
        self._pos = np.zeros(batch_size, dtype=np.int64)  # chunk position of the stream's next target
        self._gain = np.zeros(batch_size)  # dB: the gain of each stream's chunk

    def __iter__(self) -> TBPTTLoader:
        return self

    def __next__(self) -> Batch:
        T, L = self.seq_len, self.lookback
        lengths = self.dataset.lengths
        end = np.where(self._chunk >= 0, lengths[self._chunk], 0)
        reset = self._pos + T > end  # (B,)
        n = int(reset.sum())
        if n:
            chunks = self._deal(n)
            self._chunk[reset] = chunks
            self._pos[reset] = (self._offset_rng.random(n) * np.minimum(T, lengths[chunks] - T + 1)).astype(np.int64)
            if self.gain_db:
                self._gain[reset] = -self.gain_db * self._gain_rng.random(n)
        x = _gather(self.dataset.data, self.dataset.starts[self._chunk], lengths[self._chunk], self._pos - L,
                    L + T, self.dataset.quantizer.silence)
        batch = self._batch(x, reset, self._pos)
        self._pos += T
        return batch

    def _batch(self, x: np.ndarray, reset: np.ndarray, pos: np.ndarray) -> Batch:
        """The batch of windows x whose first targets are samples `pos` (B,) of the streams' chunks, each played at
        its stream's gain (requantized: the levels are of a linear signal, pre-emphasized or not)."""
        if self.gain_db:
            q = self.dataset.quantizer
            x = q.quantize(q.dequantize(x) * 10.0 ** (self._gain[:, None] / 20.0))
        xt = torch.from_numpy(x)
        level = None
        if self.with_levels:
            level = self.dataset.window_levels(self._chunk, pos) + torch.from_numpy(self._gain.astype(np.float32))
        return Batch(xt.pin_memory() if self.pin_memory else xt, torch.from_numpy(reset), level)

    def _deal(self, n: int) -> np.ndarray:
        """The next n chunk indices from the deck, reshuffling a fresh pass when it runs out."""
        taken = []
        while n > 0:
            if self._cursor == self._deck.size:
                self._deck = self._deck_rng.permutation(self._chunks)
                self._cursor = 0
            take = self._deck[self._cursor: self._cursor + n]
            self._cursor += take.size
            n -= take.size
            taken.append(take)
        return np.concatenate(taken)

    def _config(self) -> dict[str, Any]:
        config = {"batch_size": self.batch_size, "seq_len": self.seq_len, "lookback": self.lookback,
                  "seed": self.seed, "rank": self.rank, "world_size": self.world_size, "dataset": self.dataset.key}
        return {**config, "gain_db": self.gain_db} if self.gain_db else config  # as states of before it

    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the next batches, as plain Python values (safe for torch.load)."""
        return {
            "config": self._config(),
            "deck_rng": self._deck_rng.bit_generator.state,
            "offset_rng": self._offset_rng.bit_generator.state,
            "deck": self._deck.tolist(),
            "cursor": self._cursor,
            "chunk": self._chunk.tolist(),
            "pos": self._pos.tolist(),
            **({"gain_rng": self._gain_rng.bit_generator.state, "gain": self._gain.tolist()} if self.gain_db else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where the loader that wrote `state` stopped."""
        saved, now = state["config"], self._config()
        changed = [k for k in now if saved.get(k) != now[k]]
        if changed:
            what = ", ".join("the dataset or quantizer" if k == "dataset" else f"{k} ({saved.get(k)} -> {now[k]})"
                             for k in changed)
            raise UserError(
                f"cannot resume the data loader: {what} changed since it was saved; "
                "resume with the same settings or start a new run"
            )
        self._deck_rng.bit_generator.state = state["deck_rng"]
        self._offset_rng.bit_generator.state = state["offset_rng"]
        self._deck = np.array(state["deck"], dtype=np.int64)
        self._cursor = int(state["cursor"])
        self._chunk = np.array(state["chunk"], dtype=np.int64)
        self._pos = np.array(state["pos"], dtype=np.int64)
        if self.gain_db:
            self._gain_rng.bit_generator.state = state["gain_rng"]
            self._gain = np.array(state["gain"], dtype=np.float64)


class ReferenceTBPTTLoader(TBPTTLoader):
    """TBPTTLoader written one stream and one slice at a time: same arguments, same batches.

    The plain version that tests and tools/bench_data.py check the fast path against.
    """

    def __next__(self) -> Batch:
        T, L = self.seq_len, self.lookback
        x = np.full((self.batch_size, L + T), self.dataset.quantizer.silence, dtype=np.int64)
        reset = np.zeros(self.batch_size, dtype=bool)
        for b in range(self.batch_size):
            c = int(self._chunk[b])
            if c < 0 or self._pos[b] + T > self.dataset.lengths[c]:
                c = int(self._deal(1)[0])
                self._chunk[b] = c
                self._pos[b] = int(self._offset_rng.random() * min(T, int(self.dataset.lengths[c]) - T + 1))
                if self.gain_db:
                    self._gain[b] = -self.gain_db * self._gain_rng.random()
                reset[b] = True
            p = int(self._pos[b])
            lo = max(p - L, 0)
            x[b, L - (p - lo):] = self.dataset.chunk(c)[lo: p + T]
            self._pos[b] += T
        return self._batch(x, reset, self._pos - T)


def eval_batches(dataset: AudioDataset, batch_size: int, seq_len: int, lookback: int, rank: int = 0,
                 world_size: int = 1, with_levels: bool = False) -> Iterator[EvalBatch]:
    """Batches in which every sample of this rank's chunks is a target exactly once.

    Up to `batch_size` chunks at a time (manifest order; the last group holds the rest, so no stream is
    padding), each stream from its chunk's start; x (B, lookback + T), mask (B, T). A rank with no chunk
    yields nothing. `with_levels` adds each window's level (`AudioDataset.window_levels`).
    """
    _check_shape(batch_size, seq_len, lookback)
    T, L = seq_len, lookback
    mine = shard(len(dataset.lengths), rank, world_size)
    silence = dataset.quantizer.silence
    for g in range(0, mine.size, batch_size):
        group = mine[g: g + batch_size]
        B = group.size
        length, base = dataset.lengths[group].astype(np.int64), dataset.starts[group].astype(np.int64)
        reset = torch.ones(B, dtype=torch.bool)
        for k in range(math.ceil(int(length.max()) / T)):
            level = dataset.window_levels(group, np.full(B, k * T)) if with_levels else None
            x = _gather(dataset.data, base, length, np.full(B, k * T - L), L + T, silence)
            mask = (k * T + np.arange(T))[None, :] < length[:, None]  # (B, T)
            yield EvalBatch(torch.from_numpy(x), reset if k == 0 else torch.zeros(B, dtype=torch.bool),
                            torch.from_numpy(mask), level)
