"""`soundalike slice`: turn a folder of recordings into fixed-length mono chunks, a split and a manifest.

Decisions (docs/CONTRACTS.md has the folder and manifest format):
- Normalization is per dataset, never per chunk: gain = 0.98 / peak, the peak taken over all usable audio at
  the target rate, capped at 100 (+40 dB) so a near-silent dataset is not blown up into noise. Chunks are
  stored at the source's own level and the loader multiplies them by `gain`; only if the dataset peaks above
  full scale (float files, or inter-sample peaks that resampling reveals) are chunks stored scaled down by
  `storage_scale` = 1 / peak, which `gain` already accounts for, so nothing is clipped.
- Silence: a chunk whose RMS after normalization is below --silence-db (default -50 dBFS) is dropped. It is
  judged after the gain, so the threshold means the same for a quiet and a loud recording.
- Split: each source is cut into regions of about --region-seconds of consecutive chunks. Regions of all
  sources are shuffled deterministically (a hash of seed, source sha256 and region index, so the order of
  files does not matter) and dealt out so each split's share of audio tracks its target; valid and test get
  the first regions whenever there are enough, so a small dataset still has them. Where chunks of different
  splits would overlap in time (the overlap at a region border), one is dropped (the train one if either
  is train): no stretch of audio is in two splits. Two paths with the same sha256 count once.
- The audio after the last whole chunk of a source is not used; a source shorter than one chunk is skipped.
- Reuse: a rerun with the same parameters does not decode a source whose sha256 is in the manifest (its
  analysis is kept there); chunk files it already has are kept, linked into another split's folder if
  the split changed. Other parameters, or --force, decode everything again; a chunk that comes out
  identical keeps its file.
- Atomic output: chunk files are written under names the current manifest does not use (a name it uses is
  kept only if its content is the same; otherwise the index moves on by 1,000,000), then manifest.json is
  replaced atomically, then unreferenced chunk files are deleted. A killed run leaves the old dataset whole.
- Memory is bounded: files are hashed and decoded in blocks, twice (analysis, then writing).
- Hidden files and folders (names starting with "."), and the output folder itself, are not inputs.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from . import __version__
from .atomic import atomic_path, check_folder, write_json
from .audio import HINT, QUALITY, file_info, iter_blocks, write_wav
from .dataset import FORMAT, MANIFEST, MAX_GAIN, PEAK_TARGET, SPLITS, Manifest, normalization_gain
from .errors import UserError

JOURNAL = ".slice-journal"  # names of chunk files a run is about to write, so a later run may remove them
# atomic_path's temporary names for chunk files: `.<chunk>.wav.<random>.wav.tmp`
TEMP_CHUNK = re.compile(r"\.[0-9a-f]{8}-\d{6,}\.wav\.[^/]*\.wav\.tmp")
INDEX_STRIDE = 1_000_000  # added to a chunk's index when its usual name is still taken by the old manifest
HASH_BLOCK = 1 << 20
SILENT_DB = -200.0  # the RMS recorded for digital silence (log of zero)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the slice command's arguments to `parser`."""
    parser.add_argument("inputs", nargs="+", type=Path, help="audio files or folders (searched recursively)")
    parser.add_argument("--out", type=Path, required=True, help="dataset folder (e.g. data/x/dataset)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="target rate in Hz (%(default)s)")
    parser.add_argument("--chunk-seconds", type=float, default=8.0, help="length of each chunk (%(default)s)")
    parser.add_argument("--overlap-seconds", type=float, default=1.0,
                        help="overlap of consecutive chunks (%(default)s)")
    parser.add_argument("--split", default="0.88,0.06,0.06",
                        help="train,valid,test fractions of the audio (%(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split assignment (%(default)s)")
    parser.add_argument("--silence-db", type=float, default=-50.0,
                        help="drop chunks whose RMS after normalization is below this, dBFS (%(default)s)")
    parser.add_argument("--region-seconds", type=float, default=60.0,
                        help="length of the contiguous regions assigned to one split (%(default)s)")
    parser.add_argument("--force", action="store_true", help="decode every file again, reusing nothing")


def run(args: argparse.Namespace) -> int:
    """Slice `args.inputs` into `args.out` and print a summary."""
    params = make_params(args.sample_rate, args.chunk_seconds, args.overlap_seconds, args.split, args.seed,
                         args.silence_db, args.region_seconds)
    manifest = slice_dataset(args.inputs, args.out, params, force=args.force)
    print(format_summary(manifest, args.out))
    return 0


def make_params(sample_rate: int = 16000, chunk_seconds: float = 8.0, overlap_seconds: float = 1.0,
                split: str = "0.88,0.06,0.06", seed: int = 0, silence_db: float = -50.0,
                region_seconds: float = 60.0) -> dict:
    """Check the slicing parameters and return them as the manifest's `params`."""
    if not 1000 <= sample_rate <= 384000:
        raise UserError(f"--sample-rate must be between 1000 and 384000 Hz, got {sample_rate}")
    for flag, value in (("--chunk-seconds", chunk_seconds), ("--overlap-seconds", overlap_seconds),
                        ("--region-seconds", region_seconds), ("--silence-db", silence_db)):
        if not math.isfinite(value):
            raise UserError(f"{flag} must be a finite number, got {value}")
    if round(chunk_seconds * sample_rate) < 1:
        raise UserError(f"--chunk-seconds must be positive, got {chunk_seconds}")
    if not 0 <= overlap_seconds < chunk_seconds:
        raise UserError(f"--overlap-seconds must be >= 0 and below --chunk-seconds, got {overlap_seconds}")
    try:
        fractions = [float(x) for x in split.split(",")]
    except ValueError:
        fractions = []
    if len(fractions) != 3 or min(fractions) < 0 or fractions[0] <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise UserError(f"--split must be three fractions train,valid,test summing to 1 (train > 0), "
                        f"got {split!r}")
    if region_seconds <= 0:
        raise UserError(f"--region-seconds must be positive, got {region_seconds}")
    return {"sample_rate": sample_rate, "chunk_seconds": float(chunk_seconds),
            "overlap_seconds": float(overlap_seconds), "splits": dict(zip(SPLITS, fractions)), "seed": seed,
            "silence_db": float(silence_db), "region_seconds": float(region_seconds),
            "peak_target": PEAK_TARGET, "max_gain": MAX_GAIN, "resample_quality": QUALITY}


@dataclass
class _Grid:
    """Chunk positions in samples at the target rate."""

    rate: int
    size: int  # samples per chunk
    hop: int  # samples between chunk starts

    @classmethod
    def of(cls, params: dict) -> _Grid:
        rate = params["sample_rate"]
        size = round(params["chunk_seconds"] * rate)
        return cls(rate, size, size - round(params["overlap_seconds"] * rate))

    @property
    def reach(self) -> int:
        """How many following chunks each chunk overlaps."""
        return (self.size - 1) // self.hop


def slice_dataset(inputs: list[Path], out: Path, params: dict, force: bool = False,
                  progress: bool = True) -> dict:
    """Slice the audio files in `inputs` into the dataset folder `out`; return the manifest written."""
    out = check_folder(out, "--out")
    grid = _Grid.of(params)
    files, skipped = _collect(inputs, out.resolve())
    old, ours = _previous(out)
    # Analysis and chunk files are only reused when they were made exactly as this run would make them.
    same = (old is not None and not force and old.get("params") == params
            and old.get("tool_version") == __version__)
    known = {s["sha256"]: s for s in old["sources"] if "analysis" in s} if same else {}

    sources = _analyse_all(files, out.resolve(), grid, known, skipped, progress)
    skipped.sort(key=lambda s: s["path"])
    if not sources:
        why = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3]) or "no files found"
        raise UserError(f"no usable audio in {', '.join(map(str, inputs))} ({len(skipped)} files skipped: "
                        f"{why}{'; ...' if len(skipped) > 3 else ''})")

    plan = _plan([s for _, s in sources], params, grid)
    if not any(plan.kept.values()):
        raise UserError(f"every chunk is silent (RMS below {params['silence_db']:g} dBFS after "
                        f"normalization); lower --silence-db or add louder recordings")
    reuse_chunks = same and old.get("storage_scale") == plan.scale
    out.mkdir(parents=True, exist_ok=True)
    with open(out / JOURNAL, "a", encoding="utf-8") as journal:
        chunks = _write_chunks(sources, plan, grid, out, old, ours, journal, reuse_chunks, progress)

    counts = {s: sum(c["split"] == s for c in chunks) for s in SPLITS}
    manifest = {
        "format": FORMAT,
        "tool_version": __version__,
        "params": params,
        "gain": plan.gain,
        "storage_scale": plan.scale,
        "sources": [s for _, s in sources],
        "skipped": skipped,
        "chunks": chunks,
        "summary": {
            "hours_in": round(sum(s["duration"] for _, s in sources) / 3600, 6),
            "hours": {s: round(counts[s] * grid.size / grid.rate / 3600, 6) for s in SPLITS},
            "chunks": counts,
            "silent_dropped": plan.silent,
            "guard_dropped": plan.guard,
        },
    }
    write_json(out / MANIFEST, manifest)
    _remove_unreferenced(out, {c["file"] for c in chunks}, ours | set((out / JOURNAL).read_text().split()))
    (out / JOURNAL).unlink()
    return manifest


def format_summary(manifest: dict, out: Path) -> str:
    """The human summary printed at the end of a run."""
    s = manifest["summary"]
    lines = [f"sliced {len(manifest['sources'])} files, {s['hours_in']:.3f} h of audio -> {out}"]
    for name in SPLITS:
        lines.append(f"  {name:5s}  {s['hours'][name]:8.3f} h  {s['chunks'][name]:6d} chunks")
    p = manifest["params"]
    lines.append(f"  silent chunks dropped: {s['silent_dropped']} (RMS below {p['silence_db']:g} dBFS after "
                 f"normalization); chunks dropped at split borders: {s['guard_dropped']}")
    lines.append(f"  gain {manifest['gain']:.3f} ({20 * math.log10(manifest['gain']):+.1f} dB)")
    empty = [n for n in SPLITS if p["splits"][n] > 0 and s["chunks"][n] == 0]
    if empty:
        lines.append(f"  warning: no audio for {', '.join(empty)}: too few regions of "
                     f"{p['region_seconds']:g} s; add recordings or lower --region-seconds")
    lines.append(f"skipped {len(manifest['skipped'])} files" + (":" if manifest["skipped"] else ""))
    lines += [f"  {k['path']}: {k['reason']}" for k in manifest["skipped"]]
    if any(k["reason"].startswith("not an audio file") for k in manifest["skipped"]):
        lines.append(f"  ({HINT})")
    return "\n".join(lines)


def _previous(out: Path) -> tuple[dict | None, set[str]]:
    """The dataset already in `out` (its manifest, or None) and the chunk names an earlier run wrote.

    A slicer may only replace or remove files it can prove it wrote: those its manifest lists, those its
    journal lists (a killed run's) and its own temporary names. A non-empty folder that holds neither a
    manifest nor a journal is someone else's, and is refused.
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a folder")
    if not out.is_dir():
        return None, set()
    journal = out / JOURNAL
    ours = set(journal.read_text(encoding="utf-8").split()) if journal.is_file() else set()
    if (out / MANIFEST).exists():
        try:
            manifest = Manifest.load(out)
        except UserError as e:  # never overwritten: it may be a damaged dataset the user wants to look at
            raise UserError(f"--out {out}: holds a {MANIFEST} this tool cannot use ({e}); choose another "
                            "folder") from None
        return manifest.data, ours | {c.file for c in manifest.chunks}
    if any(out.iterdir()) and not journal.is_file():
        raise UserError(f"--out {out}: the folder is not empty and holds no dataset ({MANIFEST}); choose a new "
                        "or empty folder (nothing in it was changed)")
    return None, ours


def _collect(inputs: list[Path], out: Path) -> tuple[list[Path], list[dict]]:
    files, skipped = [], []
    for inp in map(Path, inputs):
        full = inp.resolve()
        if full == out or out in full.parents:
            raise UserError(f"the input {inp} is inside the output folder {out}; choose another --out")
        if full.is_file():
            files.append(full)
        elif full.is_dir():
            for root, dirs, names in os.walk(full):
                # The output folder may sit inside an input folder (data/x/ and data/x/dataset/).
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and Path(root, d) != out)
                files += [Path(root, n) for n in sorted(names) if not n.startswith(".")]
        else:
            raise UserError(f"{inp}: no such file or folder (an input of slice)")
    unique = list(dict.fromkeys(files))
    return unique, skipped


def _rel(path: Path, out: Path) -> str:
    """A source's path as the manifest records it: relative to the dataset folder's parent."""
    return Path(os.path.relpath(path, out.parent)).as_posix()


def _skip(path: Path, out: Path, err: UserError) -> dict:
    # The summary lists the readable formats once, not on every skipped file.
    reason = str(err).removeprefix(f"{path}: ").partition(f"; {HINT}")[0]
    return {"path": _rel(path, out), "reason": reason}


def _hash(path: Path) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def _chunks(blocks: Iterator[np.ndarray], grid: _Grid, stop: int | None = None
            ) -> Iterator[tuple[int, np.ndarray]]:
    """(position, chunk (size,)) for every whole chunk of a block stream, up to position `stop`."""
    buf, start, pos = np.zeros(0, np.float32), 0, 0  # start: stream index of buf[0]
    for block in blocks:
        buf = np.concatenate([buf, block])
        while pos * grid.hop + grid.size <= start + len(buf):
            a = pos * grid.hop - start
            yield pos, buf[a: a + grid.size]
            pos += 1
            if stop is not None and pos > stop:
                return
        cut = min(pos * grid.hop - start, len(buf))
        buf, start = buf[cut:], start + cut


def _analyse_all(files: list[Path], out: Path, grid: _Grid, known: dict, skipped: list[dict],
                 progress: bool) -> list[tuple[Path, dict]]:
    """Pass 1: hash every file, analyse the ones not in `known` (sha256 -> source record); skip bad ones."""
    infos, sources, seen = {}, [], {}
    for path in files:
        try:
            infos[path] = file_info(path)
        except UserError as e:
            skipped.append(_skip(path, out, e))
    todo = [p for p in files if p in infos]
    bar = tqdm(total=round(sum(infos[p].duration for p in todo)), unit="s", desc="analyse",
               disable=not progress, file=sys.stderr)
    for i, path in enumerate(todo):
        bar.set_postfix_str(f"file {i + 1}/{len(todo)}")
        rel, info = _rel(path, out), infos[path]
        try:
            size, sha = _hash(path)
        except OSError as e:
            skipped.append({"path": rel, "reason": f"cannot read ({e.strerror or e})"})
            continue
        if sha in seen:
            skipped.append({"path": rel, "reason": f"same content as {seen[sha]['path']} (identical sha256)"})
            bar.update(info.duration)
            continue
        if sha in known:
            src = dict(known[sha], path=rel)
            bar.update(info.duration)
        else:
            try:
                analysis = _analyse(path, grid, lambda n: bar.update(n / grid.rate))
            except UserError as e:
                skipped.append(_skip(path, out, e))
                continue
            src = {"path": rel, "size": size, "sha256": sha, "duration": round(info.duration, 6),
                   "sample_rate": info.sample_rate, "channels": info.channels, "format": info.format,
                   "analysis": analysis}
        if not src["analysis"]["rms_db"]:
            skipped.append({"path": rel, "reason": f"shorter than one chunk ({src['duration']:.1f} s < "
                                                   f"{grid.size / grid.rate:g} s)"})
            continue
        seen[sha] = src
        sources.append((path, src))
    bar.close()
    return sources


def _analyse(path: Path, grid: _Grid, tick) -> dict:
    """Pass 1: length and peak at the target rate, and the RMS (dBFS, source level) of every chunk."""
    stats = {"frames": 0, "peak": 0.0}

    def tap(blocks):
        for b in blocks:
            stats["frames"] += len(b)
            stats["peak"] = max(stats["peak"], float(np.abs(b).max()))
            tick(len(b))
            yield b

    rms = []
    for _, chunk in _chunks(tap(iter_blocks(path, grid.rate)), grid):
        ms = float(np.mean(np.square(chunk, dtype=np.float64)))
        rms.append(round(max(10 * math.log10(ms), SILENT_DB), 2) if ms > 0 else SILENT_DB)
    return {"frames": stats["frames"], "peak": round(stats["peak"], 7), "rms_db": rms}


@dataclass
class _Plan:
    gain: float  # what the loader multiplies stored chunks by
    scale: float  # stored chunk = source audio * scale
    kept: dict  # sha256 -> [(position, split)]
    silent: int
    guard: int


def _plan(sources: list[dict], params: dict, grid: _Grid) -> _Plan:
    """Gain, silent chunks, regions, the split of every region, and the chunks kept at split borders."""
    peak = max(s["analysis"]["peak"] for s in sources)
    norm = normalization_gain(peak)
    scale = 1.0 if peak <= 1.0 else 1.0 / peak
    gain_db = 20 * math.log10(norm)
    fractions = params["splits"]

    loud, regions = {}, []  # loud: sha -> [bool per position]; regions: (key, sha, positions, weight)
    region_len = max(2 * grid.reach + 1, round(params["region_seconds"] * grid.rate / grid.hop))
    for s in sources:
        sha, rms = s["sha256"], s["analysis"]["rms_db"]
        loud[sha] = [r + gain_db >= params["silence_db"] for r in rms]
        n = len(rms)
        count = max(1, round(n / region_len))
        for r in range(count):
            positions = range(r * n // count, (r + 1) * n // count)
            weight = sum(loud[sha][p] for p in positions)
            if weight:
                key = hashlib.sha256(f"{params['seed']}:{sha}:{r}".encode()).hexdigest()
                regions.append((key, sha, positions, weight))
    regions.sort()

    names = [n for n in SPLITS if fractions[n] > 0]
    first = [n for n in names if n != "train"] if len(regions) >= len(names) else []
    assigned, total, split_of = dict.fromkeys(SPLITS, 0.0), 0.0, {}
    for i, (_, sha, positions, weight) in enumerate(regions):
        total += weight
        # The split furthest behind its share of the audio dealt so far takes the region.
        name = first[i] if i < len(first) else max(names, key=lambda n: fractions[n] * total - assigned[n])
        assigned[name] += weight
        for p in positions:
            split_of[sha, p] = name

    kept, silent, guard = {}, 0, 0
    for s in sources:
        sha = s["sha256"]
        split = [split_of.get((sha, p)) if ok else None for p, ok in enumerate(loud[sha])]
        silent += split.count(None)
        for i in range(len(split)):
            for j in range(i + 1, min(len(split), i + grid.reach + 1)):
                if split[i] is None:
                    break
                if split[j] is not None and split[j] != split[i]:
                    guard += 1
                    if split[i] == "train":
                        split[i] = None
                    else:
                        split[j] = None
        kept[sha] = [(p, name) for p, name in enumerate(split) if name is not None]
    return _Plan(gain=round(norm / scale, 7), scale=scale, kept=kept, silent=silent, guard=guard)


def _to_int16(chunk: np.ndarray) -> np.ndarray:
    # Scaled by 32768 so that reading back as float (which divides by 32768) gives the same values.
    return np.clip(np.rint(chunk * 32768.0), -32768, 32767).astype(np.int16)


def _same_audio(path: Path, samples: np.ndarray, rate: int) -> bool:
    try:
        data, r = sf.read(path, dtype="int16")
    except (sf.SoundFileError, RuntimeError, OSError):
        return False
    return r == rate and np.array_equal(data, samples)


def _write_chunks(sources: list[tuple[Path, dict]], plan: _Plan, grid: _Grid, out: Path, old: dict | None,
                  ours: set[str], journal, reuse: bool, progress: bool) -> list[dict]:
    """Pass 2: make a file for every kept chunk, never touching a file the old manifest uses or a file this
    tool did not write; every new name is added to the `journal` before its file is written."""
    old_files = {c["file"]: c for c in old["chunks"]} if old else {}
    old_at = {(c["source"], round(c["offset"] * grid.rate) // grid.hop): c
              for c in (old["chunks"] if reuse else [])}
    used: set[str] = set()  # names given to chunks of the new manifest
    chunks: dict[tuple[str, int], dict] = {}
    decode: dict[str, dict[int, str]] = {}  # sha -> {position: split}

    def names(split: str, sha: str, pos: int) -> Iterator[str]:
        idx = pos
        while True:
            yield f"chunks/{split}/{sha[:8]}-{idx:06d}.wav"
            idx += INDEX_STRIDE

    def free(name: str) -> bool:
        return name not in used and name not in old_files and (name in ours or not (out / name).exists())

    def claim(name: str) -> None:
        journal.write(name + "\n")
        journal.flush()

    def record(name: str, sha: str, pos: int, split: str) -> None:
        used.add(name)
        chunks[sha, pos] = {"file": name, "source": sha, "offset": round(pos * grid.hop / grid.rate, 6),
                            "samples": grid.size, "split": split}

    for _, src in sources:
        sha = src["sha256"]
        for pos, split in plan.kept[sha]:
            prev = old_at.get((sha, pos))
            if prev is None or not (out / prev["file"]).is_file():
                decode.setdefault(sha, {})[pos] = split
            elif prev["split"] == split:
                record(prev["file"], sha, pos, split)
            else:
                name = next(n for n in names(split, sha, pos) if free(n))
                claim(name)
                _link(out / prev["file"], out / name)
                record(name, sha, pos, split)

    todo = [(path, src) for path, src in sources if src["sha256"] in decode]
    bar = tqdm(total=round(sum(s["duration"] for _, s in todo)), unit="s", desc="write",
               disable=not progress or not todo, file=sys.stderr)
    for i, (path, src) in enumerate(todo):
        bar.set_postfix_str(f"file {i + 1}/{len(todo)}")
        sha, want = src["sha256"], decode[src["sha256"]]
        blocks = iter_blocks(path, grid.rate)
        done, seconds = 0, 0.0
        for pos, chunk in _chunks(blocks, grid, stop=max(want)):
            bar.update(grid.hop / grid.rate)
            seconds += grid.hop / grid.rate
            if pos not in want:
                continue
            samples = _to_int16(chunk * plan.scale)
            for name in names(want[pos], sha, pos):
                if name in used:
                    continue
                if name in old_files:
                    # The old manifest still uses this name: keep it only if the content is the same.
                    if old_files[name]["source"] == sha and _same_audio(out / name, samples, grid.rate):
                        break
                    continue
                if not free(name):
                    continue
                claim(name)
                write_wav(out / name, samples, grid.rate)
                break
            record(name, sha, pos, want[pos])
            done += 1
        if done != len(want):
            raise UserError(f"{path}: gave less audio than when it was analysed (changed while slicing?); "
                            f"run again")
        bar.update(max(src["duration"] - seconds, 0.0))
    bar.close()
    return [chunks[src["sha256"], pos] for _, src in sources for pos, _ in plan.kept[src["sha256"]]]


def _link(src: Path, dst: Path) -> None:
    """Give an existing chunk file a second name (a hard link, or a copy where links are not possible)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst, suffix=".wav") as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _remove_unreferenced(out: Path, keep: set[str], ours: set[str]) -> None:
    """Delete chunk files this tool wrote (`ours`, and its temporary files) that the new manifest does not use."""
    folder = out / "chunks"
    if not folder.is_dir():
        return
    for path in folder.rglob("*"):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and rel not in keep and (rel in ours or TEMP_CHUNK.fullmatch(path.name)):
            path.unlink()
