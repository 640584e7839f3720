import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soundalike.data import CACHE_NAME, AudioDataset, ReferenceTBPTTLoader, TBPTTLoader, eval_batches
from soundalike.emphasis import Emphasis
from soundalike.errors import UserError
from soundalike.quantize import Quantizer

SR = 16000
# With 65536 linear levels a 16-bit sample v is level v + 32768, so a chunk written as `level - 32768`
# reads back as exactly those levels: tests can put each sample's position into its level.
EXACT = Quantizer("linear", 65536)


def make_dataset(root: Path, chunks: dict[str, list[np.ndarray]], gain: float = 1.0) -> Path:
    """Write int16 chunks per split and a manifest.json as in docs/CONTRACTS.md; return `root`."""
    entries = []
    for split, arrays in chunks.items():
        for i, a in enumerate(arrays):
            rel = f"chunks/{split}/0a1b2c3d-{i:06d}.wav"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / rel, np.asarray(a, dtype=np.int16), SR, subtype="PCM_16")
            entries.append({"file": rel, "source": "ab" * 32, "offset": 0.0, "samples": len(a), "split": split})
    manifest = {
        "format": 1,
        "tool_version": "0.1.0",
        "params": {"sample_rate": SR, "chunk_seconds": 8.0, "overlap_seconds": 1.0,
                   "splits": {"train": 0.88, "valid": 0.06, "test": 0.06}, "seed": 0, "silence_db": -50.0},
        "gain": gain,
        "sources": [],
        "skipped": [],
        "chunks": entries,
        "summary": {},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def position_dataset(root: Path, lengths: list[int], split: str = "train") -> AudioDataset:
    """A dataset whose sample at global position g (within the split) has level g + 1 (never silence)."""
    ends = np.cumsum(lengths)
    arrays = [np.arange(e - n, e) + 1 - 32768 for n, e in zip(lengths, ends)]
    make_dataset(root, {split: arrays})
    ds = AudioDataset(root, EXACT, split)
    assert len(ds) < EXACT.silence - 1
    return ds


def test_dataset_applies_gain_then_quantizes(tmp_path):
    rng = np.random.default_rng(0)
    train = [rng.integers(-9000, 9000, n) for n in (300, 120, 257)]
    make_dataset(tmp_path, {"train": train, "valid": [rng.integers(-9000, 9000, 50)]}, gain=1.7)
    q = Quantizer("mulaw", 256)
    ds = AudioDataset(tmp_path, q, "train")
    assert isinstance(ds.data, np.memmap) and ds.data.dtype == np.uint8 and ds.data.ndim == 1
    assert len(ds) == 677 and ds.sample_rate == SR and ds.gain == 1.7 and ds.quantizer == q
    assert ds.starts.tolist() == [0, 300, 420] and ds.lengths.tolist() == [300, 120, 257]
    assert ds.starts.dtype == ds.lengths.dtype == np.int64
    want = np.concatenate([q.quantize(a / 32768.0 * 1.7) for a in train])
    np.testing.assert_array_equal(ds.data, want)
    assert len(AudioDataset(tmp_path, q, "valid")) == 50


def test_cache_is_reused_and_rebuilt_when_the_manifest_changes(tmp_path):
    make_dataset(tmp_path, {"train": [np.full(100, 1000)]}, gain=1.0)
    first = AudioDataset(tmp_path, EXACT, "train")
    ino = first.cache_path.stat().st_ino
    again = AudioDataset(tmp_path, EXACT, "train")
    assert again.cache_path == first.cache_path and again.cache_path.stat().st_ino == ino
    other = AudioDataset(tmp_path, Quantizer("mulaw", 256), "train").cache_path
    assert other != first.cache_path and other.exists()

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["gain"] = 2.0
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    changed = AudioDataset(tmp_path, EXACT, "train")
    assert changed.cache_path != first.cache_path and not first.cache_path.exists()
    assert set(changed.data.tolist()) == {32768 + 2000}
    assert not other.exists()  # every cache of the old manifest is gone
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [changed.cache_path.name]


def test_pre_emphasis_filters_each_chunk_from_silence_and_has_its_own_cache(tmp_path, capsys):
    rng = np.random.default_rng(5)
    train = [rng.integers(-9000, 9000, n) for n in (300, 120)]
    make_dataset(tmp_path, {"train": train}, gain=1.7)
    plain = AudioDataset(tmp_path, Quantizer("mulaw", 256), "train")
    q = Quantizer("mulaw", 256, 0.85)
    ds = AudioDataset(tmp_path, q, "train")
    # Each chunk starts after silence: x[-1] = 0, as the loader's context before a chunk's start.
    want = [q.quantize(Emphasis(0.85).emphasize(a / 32768.0 * 1.7)[0]) for a in train]
    np.testing.assert_array_equal(ds.data, np.concatenate(want))
    assert not np.array_equal(ds.data, plain.data)
    # Its own cache and key (another coefficient is another file); the plain cache keeps the name it had.
    assert ds.cache_path.name == f"train-mulaw256-e0.85-{ds.manifest_sha[:16]}.npy"
    assert plain.cache_path.name == f"train-mulaw256-{ds.manifest_sha[:16]}.npy"
    assert ds.key != plain.key and plain.cache_path.exists()
    other = AudioDataset(tmp_path, Quantizer("mulaw", 256, 0.5), "train")
    assert len({other.cache_path, ds.cache_path, plain.cache_path}) == 3
    assert all(CACHE_NAME.fullmatch(d.cache_path.name) for d in (ds, plain, other))
    assert AudioDataset(tmp_path, q, "train").cache_path.stat().st_ino == ds.cache_path.stat().st_ino  # reused
    assert "outside [-1, 1]" not in capsys.readouterr().err

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["gain"] = 3.6  # loud enough that emphasis leaves [-1, 1]: clipped, and said so
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    loud = AudioDataset(tmp_path, q, "train")
    assert "pre-emphasis 0.85 took" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [loud.cache_path.name]  # old manifest's gone


@pytest.mark.parametrize("breakage", ["no folder", "no manifest", "no chunk file", "empty split", "bad json"])
def test_dataset_errors_name_the_path(tmp_path, breakage):
    root = tmp_path / "ds"
    root.mkdir()
    make_dataset(root, {"train": [np.zeros(10)]})
    named = root
    if breakage == "no folder":
        root = named = tmp_path / "absent"
    elif breakage == "no manifest":
        named = root / "manifest.json"
        named.unlink()
    elif breakage == "no chunk file":
        named = root / "chunks/train/0a1b2c3d-000000.wav"
        named.unlink()
    elif breakage == "bad json":
        named = root / "manifest.json"
        named.write_text("{")
    split = "valid" if breakage == "empty split" else "train"
    with pytest.raises(UserError) as e:
        AudioDataset(root, EXACT, split)
    msg = str(e.value)
    assert str(named) in msg and "\n" not in msg
    assert "soundalike slice" in msg or "split" in msg


def walk(loader, n):
    return [next(loader) for _ in range(n)]


def test_tbptt_streams_walk_chunks_in_overlapping_windows(tmp_path):
    lengths = [40, 23, 61, 9, 30]  # the 9-sample chunk is shorter than T and never used
    ds = position_dataset(tmp_path, lengths)
    B, T, L = 3, 8, 3
    batches = walk(TBPTTLoader(ds, B, T, L, seed=1), 40)
    assert batches[0].reset.all()
    for b in range(B):
        prev = None
        for batch in batches:
            assert batch.x.shape == (B, L + T) and batch.x.dtype == torch.int64 and batch.reset.dtype == torch.bool
            row = batch.x[b].numpy()
            targets = row[L:] - 1  # global sample positions
            assert np.all(np.diff(targets) == 1)
            c = int(np.searchsorted(ds.starts, targets[0], side="right") - 1)
            p = targets[0] - ds.starts[c]
            assert lengths[c] >= T and targets[-1] < ds.starts[c] + lengths[c]
            if batch.reset[b]:
                assert 0 <= p < T
                # the context before the chunk's start is silence, the rest is the chunk
                want = [EXACT.silence if q < 0 else ds.starts[c] + q + 1 for q in range(p - L, p)]
                assert row[:L].tolist() == want
                if prev is not None:  # the previous chunk was left because fewer than T samples remained
                    pc = int(np.searchsorted(ds.starts, prev[-1] - 1, side="right") - 1)
                    assert ds.starts[pc] + lengths[pc] - prev[-1] < T
            else:
                assert row[:L].tolist() == prev[-L:].tolist()  # overlap of exactly `lookback`
                assert targets[0] == prev[-1]
            prev = row
    assert sum(int(b.reset.sum()) for b in batches) > 3 * B  # streams did move on to new chunks


def test_tbptt_fast_path_matches_reference_loop(tmp_path):
    ds = position_dataset(tmp_path, [40, 23, 61, 9, 30, 17, 50])
    for rank, world in [(0, 1), (1, 2)]:
        args = (ds, 5, 7, 4)
        fast = walk(TBPTTLoader(*args, seed=3, rank=rank, world_size=world), 30)
        ref = walk(ReferenceTBPTTLoader(*args, seed=3, rank=rank, world_size=world), 30)
        for f, r in zip(fast, ref):
            assert torch.equal(f.x, r.x) and torch.equal(f.reset, r.reset)


def test_tbptt_is_deterministic_and_resumes_exactly(tmp_path):
    ds = position_dataset(tmp_path, [40, 23, 61, 30])
    make = lambda seed=0: TBPTTLoader(ds, 3, 8, 2, seed=seed)
    whole = walk(make(), 25)
    assert all(torch.equal(a.x, b.x) for a, b in zip(whole, walk(make(), 25)))
    assert not all(torch.equal(a.x, b.x) for a, b in zip(whole, walk(make(seed=1), 25)))

    first = make()
    walk(first, 10)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)  # as a checkpoint would, read back with torch.load's safe default
    resumed = make(seed=0)
    resumed.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))
    for a, b in zip(whole[10:], walk(resumed, 15)):
        assert torch.equal(a.x, b.x) and torch.equal(a.reset, b.reset)

    with pytest.raises(UserError, match="batch_size"):
        TBPTTLoader(ds, 4, 8, 2, seed=0).load_state_dict(first.state_dict())


def test_tbptt_shards_chunks_across_ranks(tmp_path):
    lengths = [20, 20, 20, 20, 20]
    ds = position_dataset(tmp_path, lengths)
    for rank in range(3):
        seen = set()
        for batch in walk(TBPTTLoader(ds, 4, 5, 2, seed=0, rank=rank, world_size=3), 20):
            seen |= set(((batch.x[:, 2:].numpy() - 1) // 20).ravel().tolist())
        assert seen == {i for i in range(5) if i % 3 == rank}
    with pytest.raises(UserError, match="rank 5"):
        TBPTTLoader(ds, 4, 5, 2, seed=0, rank=5, world_size=6)
    with pytest.raises(UserError, match="shorter than seq_len"):
        TBPTTLoader(ds, 4, 21, 2, seed=0)


@pytest.mark.parametrize("world", [1, 2])
def test_eval_batches_visit_every_sample_once(tmp_path, world):
    lengths = [40, 23, 61, 9, 30, 5, 17]
    ds = position_dataset(tmp_path, lengths)
    B, T, L = 3, 8, 3
    seen = []
    masked = 0
    for rank in range(world):
        streams = 0
        for batch in eval_batches(ds, B, T, L, rank=rank, world_size=world):
            x, reset, mask = batch.x.numpy(), batch.reset.numpy(), batch.mask.numpy()
            width = x.shape[0]  # B streams, fewer in the last group: no stream is all padding
            assert 1 <= width <= B and x.shape == (width, L + T) and mask.shape == (width, T)
            streams += int(reset.sum())
            masked += int(mask.sum())
            seen += (x[:, L:][mask] - 1).tolist()
            assert np.all(x[:, L:][~mask] == EXACT.silence)  # padding is silence, never another chunk
            for b in range(width):
                if reset[b]:  # a chunk's first window has silent context
                    assert np.all(x[b, :L] == EXACT.silence)
                # inside a stream the context is the samples just before the targets, silence before the start
                real = x[b][x[b] != EXACT.silence]
                assert np.all(np.diff(real) == 1)
        assert streams == len(range(rank, len(lengths), world))  # each chunk of this rank starts once
    assert masked == len(ds)
    assert sorted(seen) == list(range(len(ds)))


def test_eval_batches_keep_streams_apart(tmp_path):
    ds = position_dataset(tmp_path, [10, 20])
    batches = list(eval_batches(ds, 2, 8, 3))
    assert len(batches) == 3
    assert [b.reset.tolist() for b in batches] == [[True, True], [False, False], [False, False]]
    assert [b.mask.sum(1).tolist() for b in batches] == [[8, 8], [2, 8], [0, 4]]
    assert batches[1].x[0].tolist() == [6, 7, 8, 9, 10] + [EXACT.silence] * 6
    # a window wider than the whole split still works (every row is padded)
    (only,) = eval_batches(ds, 2, 64, 3)
    assert only.mask.sum(1).tolist() == [10, 20] and only.x[1, 3:23].tolist() == list(range(11, 31))


def test_chunk_that_disagrees_with_the_manifest_is_a_user_error(tmp_path):
    make_dataset(tmp_path, {"train": [np.zeros(10)]})
    sf.write(tmp_path / "chunks/train/0a1b2c3d-000000.wav", np.zeros((12, 2), dtype=np.int16), SR)
    with pytest.raises(UserError, match="12 samples, 2 channel"):
        AudioDataset(tmp_path, EXACT, "train")


@pytest.mark.parametrize("file", ["../../outside.wav", "/etc/passwd", "chunks/../../outside.wav", "link/x.wav"])
def test_manifest_paths_must_stay_inside_the_dataset(tmp_path, file):
    """A manifest is data someone may have sent: a chunk path leaving the folder is refused, naming the entry."""
    root = make_dataset(tmp_path / "ds", {"train": [np.zeros(100)]})
    sf.write(tmp_path / "outside.wav", np.zeros(100, np.int16), SR)
    (root / "link").symlink_to(tmp_path)  # a link inside the folder that points out of it
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["chunks"][0]["file"] = file
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"manifest.json: chunks\[0\]\.file: .*(outside|absolute)"):
        AudioDataset(root, EXACT, "train")
    from soundalike.stats import dataset_chunks

    with pytest.raises(UserError, match=r"chunks\[0\]\.file"):
        dataset_chunks(root, "train")
