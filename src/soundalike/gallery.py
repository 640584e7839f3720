"""A static HTML page of one run: learning curves, every checkpoint's samples and every render, each with a
player, a log-mel spectrogram, a waveform overview and its statistics, beside the training data's own.

The page (runs/<name>/gallery.html) works opened from disk: relative links, no server, no network, no
external scripts or fonts. Pictures and statistics are cached under runs/<name>/gallery/ and made again only
when their WAV is newer, so training can rebuild the page at every checkpoint. Players and images load
lazily, so the page stays usable with hundreds of clips.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import shlex
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import numpy as np
import yaml

from .atomic import atomic_path, write_json, write_text
from .dataset import MANIFEST, Manifest
from .errors import UserError
from .run_folder import RunFolder, hour_command
from .spectrogram import log_mel
from .stats import (
    HISS_DB,
    VERDICTS,
    FrameGaussian,
    Levels,
    Reference,
    clip_stats,
    dataset_chunks,
    format_floor,
    frame_features,
    frechet_distance,
    judge,
    load_audio,
    reference,
    spread,
)

CACHE_VERSION = 2  # bump when clip_stats changes, so cached statistics are made again
IMAGE_W = 400  # px; the PNGs are shown at this width
MEL_H = 96
WAVE_H = 48
MEL_RANGE_DB = (-90.0, -10.0)  # a fixed colour scale, so loudness compares across clips
DATA_CLIPS = 8  # chunks of the training data whose statistics are shown
OPEN_GROUPS = 3  # newest groups of each section shown unfolded


@dataclass
class Clip:
    """One WAV on the page with what is known about it."""

    wav: Path
    cache: Path  # stem of its cached files: <stem>.mel.png, <stem>.wave.png, <stem>.stats.json
    meta: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    error: str = ""
    frames: FrameGaussian | None = None


@dataclass
class Group:
    """Clips from one checkpoint: one samples/step-N folder or one render."""

    title: str
    subtitle: str
    clips: list[Clip]
    step: int | None = None
    frechet: float | None = None
    command: str | None = None  # renders an hour from this checkpoint (None: its weights were pruned)
    kept: bool = False  # a favourite (`soundalike keep`)


# ---- pictures -------------------------------------------------------------------------------------------


def _fresh(out: Path, src: Path) -> bool:
    """Whether a cached file exists and is at least as new as what it was made from."""
    return out.is_file() and out.stat().st_mtime >= src.stat().st_mtime


def _save_png(path: Path, indices: np.ndarray, palette: np.ndarray) -> None:
    """Write a palette PNG (one byte a pixel before compression: a few kB a picture), atomically."""
    from PIL import Image  # matplotlib's own dependency

    img = Image.fromarray(indices.astype(np.uint8), mode="P")
    img.putpalette(palette.astype(np.uint8).ravel().tolist())
    with atomic_path(path, suffix=".png") as tmp:
        img.save(tmp, format="PNG", optimize=True)


def _columns(n: int, width: int) -> np.ndarray:
    """Edges splitting n >= 1 items into `width` columns, (width + 1,).

    With fewer items than columns, edges repeat; ufunc.reduceat then gives a column its one item.
    """
    return np.linspace(0, n, width + 1).astype(int)


def mel_png(audio: np.ndarray, rate: int, path: Path) -> None:
    """A log-mel spectrogram picture (time across, 0 Hz at the bottom) with the magma colour map."""
    from matplotlib import colormaps

    n_fft = 2 ** round(math.log2(0.046 * rate))
    # A few STFT frames a pixel column are plenty: a long render's picture then skips audio between frames
    # (constant time and memory per clip); short clips still get a frame every n_fft / 4.
    hop = max(n_fft // 4, len(audio) // (IMAGE_W * 4))
    mel = log_mel(audio, rate, n_mels=64, n_fft=n_fft, hop=hop)  # (T, 64)
    cols = np.maximum.reduceat(mel, _columns(len(mel), IMAGE_W)[:-1], axis=0)  # (W, 64): loudest frame wins
    rows = cols.T[::-1][np.linspace(0, 63, MEL_H).round().astype(int)]  # (MEL_H, W), high bands on top
    lo, hi = MEL_RANGE_DB
    idx = np.clip((rows - lo) / (hi - lo) * 255, 0, 255)
    palette = colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255
    _save_png(path, idx, palette)


def wave_png(audio: np.ndarray, path: Path) -> None:
    """A waveform overview: the peak envelope, the RMS envelope darker inside it, full-scale peaks in red."""
    x = np.asarray(audio, dtype=np.float64) if len(audio) else np.zeros(1)
    h, mid = WAVE_H, (WAVE_H - 1) / 2
    edges = _columns(len(x), IMAGE_W)
    lo, hi = np.minimum.reduceat(x, edges[:-1]), np.maximum.reduceat(x, edges[:-1])
    rms = np.sqrt(np.add.reduceat(x**2, edges[:-1]) / np.maximum(np.diff(edges), 1))
    img = np.zeros((h, IMAGE_W), dtype=np.uint8)
    y = np.arange(h)[:, None]
    top, bottom = mid - np.clip(hi, -1, 1) * mid, mid - np.clip(lo, -1, 1) * mid
    img[(y >= np.floor(top)) & (y <= np.ceil(bottom))] = 1
    img[(y >= mid - rms * mid) & (y <= mid + rms * mid)] = 2
    img[[0, h - 1]] = np.where((hi >= 0.999) | (lo <= -0.999), 3, img[[0, h - 1]])
    palette = np.array([[250, 250, 252], [140, 170, 215], [40, 80, 150], [210, 40, 40]])
    _save_png(path, img, palette)


def curves_png(metrics: list[dict], path: Path) -> bool:
    """Learning curves (train and validation bits per sample against steps and hours); False if none."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series = {}
    for key in ("train_bits", "val_bits"):
        # A resumed run logs again the steps after its last checkpoint; the later line of a step wins.
        by_step = {m["step"]: m for m in metrics
                   if isinstance(m.get(key), (int, float)) and math.isfinite(m[key])}
        rows = [by_step[k] for k in sorted(by_step)]
        series[key] = (
            np.array([m["step"] for m in rows], dtype=float),
            np.array([m.get("elapsed_s", math.nan) for m in rows], dtype=float) / 3600,
            np.array([m[key] for m in rows], dtype=float),
        )
    if not any(len(s[0]) for s in series.values()):
        return False
    fig = Figure(figsize=(10, 3.2), dpi=80)
    FigureCanvasAgg(fig)
    for col, (xlabel, xi) in enumerate((("step", 0), ("hours of training", 1))):
        ax = fig.add_subplot(1, 2, col + 1)
        t, v = series["train_bits"], series["val_bits"]
        if len(t[0]):
            ax.plot(t[xi], t[2], lw=1, color="#7a9cc6", label="train")
        if len(v[0]):
            ax.plot(v[xi], v[2], "o-", ms=3, lw=1.5, color="#c8553d", label="validation")
            best = int(np.argmin(v[2]))
            ax.annotate(f"best {v[2][best]:.3f}", (v[xi][best], v[2][best]), textcoords="offset points",
                        xytext=(0, 8), ha="center", fontsize=8, color="#c8553d")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("bits per sample")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return True


# ---- gathering the run ----------------------------------------------------------------------------------


def read_metrics(path: Path) -> list[dict]:
    """metrics.jsonl as a list of dicts; a line being written (cut short) or malformed is skipped."""
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if isinstance(m, dict) and isinstance(m.get("step"), (int, float)):
            out.append(m)
    return out


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _step_of(name: str) -> int | None:
    try:
        return int(name.split("-", 1)[1])
    except (IndexError, ValueError):
        return None


def _sample_groups(run_dir: Path, cache: Path) -> list[Group]:
    """samples/step-N/ folders, newest first."""
    groups = []
    run = RunFolder(run_dir)
    favourites = run.favourite_steps()
    for folder in run.samples.glob("step-*"):
        wavs = sorted(w for w in folder.glob("*.wav") if not w.name.startswith("."))
        if not folder.is_dir() or not wavs:
            continue
        clips = [Clip(w, cache / "samples" / folder.name / w.stem, _read_json(w.with_suffix(".json")))
                 for w in wavs]
        step = _step_of(folder.name)
        if step is None:
            step = next((c.meta["step"] for c in clips if isinstance(c.meta.get("step"), int)), None)
        ckpt = next((str(c.meta["checkpoint"]) for c in clips if c.meta.get("checkpoint")), "")
        title = f"Step {step:,}" if step is not None else folder.name
        groups.append(Group(title, f"checkpoint {Path(ckpt).name}" if ckpt else "", clips, step,
                            command=hour_command(run, step) if step is not None else None,
                            kept=step in favourites))
    return sorted(groups, key=lambda g: (g.step is not None, g.step or 0, g.title), reverse=True)


def _render_folders(renders_dir: Path) -> list[Path]:
    if (renders_dir / "render.json").is_file() or any(renders_dir.glob("*.wav")):
        return [renders_dir]
    return [f for f in renders_dir.iterdir() if f.is_dir()] if renders_dir.is_dir() else []


def _render_groups(renders_dir: Path, cache: Path) -> list[Group]:
    """renders/<name>/<timestamp>/ folders, newest first (timestamps sort as text)."""
    groups = []
    for folder in _render_folders(renders_dir):
        wavs = sorted(w for w in folder.glob("*.wav") if not w.name.startswith("."))
        if not wavs:
            continue
        info = _read_json(folder / "render.json")
        tracks = {t.get("file"): t for t in info.get("tracks", []) if isinstance(t, dict)}
        clips = []
        for w in wavs:
            meta = {"checkpoint": info.get("checkpoint"), **tracks.get(w.name, {})}
            clips.append(Clip(w, cache / "renders" / folder.name / w.stem, meta))
        ckpt = Path(str(info.get("checkpoint") or "")).name
        groups.append(Group(f"Render {folder.name}", f"checkpoint {ckpt}" if ckpt else "", clips))
    return sorted(groups, key=lambda g: g.title, reverse=True)


def _dataset_of(run_dir: Path) -> Path | None:
    """The sliced dataset named by config.yaml's data.path, if the config and the folder exist."""
    try:
        cfg = yaml.safe_load(RunFolder(run_dir).config.read_text(encoding="utf-8"))
        path = Path(str(cfg["data"]["path"]))
    except (OSError, yaml.YAMLError, TypeError, KeyError):
        return None
    # Training resolves data.path against its working folder, normally the one holding runs/.
    for candidate in (path, Path.cwd() / path, run_dir.parent.parent / path, run_dir / path):
        if (candidate / MANIFEST).is_file():
            return candidate
    return None


def _prepare(clip: Clip, with_frames: bool) -> None:
    """Fill in a clip's statistics and pictures, from the cache where it is fresh."""
    wav, stem = clip.wav, clip.cache
    mel, wave, stats_path, feat = (stem.with_name(stem.name + s) for s in (".mel.png", ".wave.png",
                                                                          ".stats.json", ".frames.npz"))
    try:
        cached = _read_json(stats_path) if _fresh(stats_path, wav) else {}
        stale = [p for p in (mel, wave) + ((feat,) if with_frames else ()) if not _fresh(p, wav)]
        if cached.get("cache_version") != CACHE_VERSION:
            stale.append(stats_path)
        if stale:
            audio, rate = load_audio(wav)
            if mel in stale:
                mel_png(audio, rate, mel)
            if wave in stale:
                wave_png(audio, wave)
            if stats_path in stale:
                cached = {"cache_version": CACHE_VERSION, "stats": clip_stats(audio, rate)}
                write_json(stats_path, cached)
            if feat in stale:
                g = FrameGaussian.of(frame_features(audio, rate))
                with atomic_path(feat, suffix=".npz") as tmp, open(tmp, "wb") as f:
                    np.savez(f, **g.to_arrays("g"))
        clip.stats = cached["stats"]
        if with_frames:
            with np.load(feat) as z:
                clip.frames = FrameGaussian.from_arrays(z, "g")
    except (UserError, OSError, ValueError, KeyError) as e:
        # One bad file must not take the page (or the training run that rebuilds it) down.
        clip.error = str(e)


def _judge(clips: list[Clip], levels: Levels | None) -> None:
    """Judge the clips' statistics (cached without the data) against the data's levels: dc, level and hiss."""
    if levels is not None:
        for c in clips:
            if c.stats and not c.error:
                c.stats = judge(c.stats, levels)


def _reference(dataset: Path, cache: Path) -> Reference | None:
    """The dataset's Fréchet reference and levels, cached until the manifest changes."""
    path = cache / "reference.npz"
    try:
        if _fresh(path, dataset / MANIFEST):
            ref = Reference.load(path)
            if ref.dataset == str(dataset) and ref.levels is not None:  # one saved before the levels is redone
                return ref
        ref = reference(dataset)
        ref.save(path)
        return ref
    except (UserError, OSError, ValueError, KeyError):
        return None


# ---- HTML -----------------------------------------------------------------------------------------------

# The page's style and self-test script, inlined so the page works opened from disk (no server, no network).
CSS = (resources.files("soundalike") / "assets" / "gallery.css").read_text(encoding="utf-8")
SELFTEST_JS = (resources.files("soundalike") / "assets" / "gallery-selftest.js").read_text(encoding="utf-8")


def _esc(v: object) -> str:
    return html.escape(str(v), quote=True)


def _link(target: Path, page_dir: Path) -> str:
    """A relative URL from the page's folder to a file (a file:// URL across drives), escaped for HTML."""
    try:
        return _esc(quote(Path(os.path.relpath(target, page_dir)).as_posix()))
    except ValueError:
        return _esc(target.resolve().as_uri())


def _fmt(v: object, spec: str, unit: str = "") -> str:
    return f"{v:{spec}}{unit}" if isinstance(v, (int, float)) else "–"


def _badge(stats: dict, error: str = "") -> str:
    if error:
        return f'<span class="badge v-error" title="{_esc(error)}">unreadable</span>'
    v = stats.get("verdict", "?")
    return f'<span class="badge v-{_esc(v)}" title="{_esc(stats.get("why", ""))}">{_esc(v)}</span>'


def _stats_html(s: dict) -> str:
    vs_data = f" ({_fmt(s.get('level_db'), '+.1f')} vs data)" if s.get("level_db") is not None else ""
    cells = [
        ("level", f"{_fmt(s.get('rms_db'), '.1f')} / {_fmt(s.get('peak_db'), '.1f')} dB{vs_data}"),
        ("silence", _fmt(s.get("silence_fraction"), ".0%")),
        ("centroid", _fmt(s.get("centroid_hz"), ".0f", " Hz")),
        ("flatness", _fmt(s.get("flatness"), ".3g")),
        ("ZCR", _fmt(s.get("zcr"), ".3f")),
        ("DC", _fmt(s.get("dc_offset"), "+.4f")),
        ("clipping", _fmt(s.get("clip_fraction"), ".1%")),
        ("loop", f"{_fmt(s.get('loop_s'), '.2f', ' s')} for {_fmt(s.get('loop_repeat_s'), '.1f', ' s')}"),
        ("clicks", _fmt(s.get("crackle_per_s"), ".1f", " /s")),
        ("floor", f"{format_floor(s.get('floor_db'))} dB"),
        ("hiss", _fmt(s.get("hiss_db"), "+.1f", " dB vs data")),
    ]
    spans = "".join(f"<span>{k}</span><span>{_esc(v)}</span>" for k, v in cells)
    return f'<div class="stats">{spans}</div>'


def _card(clip: Clip, page_dir: Path) -> str:
    m, s = clip.meta, clip.stats
    stem = clip.cache
    seconds = s.get("seconds", m.get("seconds"))
    meta = [f"{_fmt(seconds, '.1f', ' s')}"]
    if m.get("split"):
        meta.append(f"{_esc(m['split'])} split")
    if m.get("temperature") is not None:
        meta.append(f"temperature {_esc(m['temperature'])}")
    if m.get("seed") is not None:
        meta.append(f"seed {_esc(m['seed'])}")
    if m.get("checkpoint"):
        meta.append(f'<span title="{_esc(m["checkpoint"])}">{_esc(Path(str(m["checkpoint"])).name)}</span>')
    parts = [
        f'<div class="card"><h3><span>{_esc(clip.wav.name)}</span>{_badge(s, clip.error)}</h3>',
        f'<audio controls preload="none" src="{_link(clip.wav, page_dir)}"></audio>',
    ]
    if clip.error:
        parts.append(f'<div class="error">{_esc(clip.error)}</div>')
    else:
        for suffix, h, alt in ((".mel.png", MEL_H, "log-mel spectrogram"), (".wave.png", WAVE_H, "waveform")):
            src = _link(stem.with_name(stem.name + suffix), page_dir)
            parts.append(f'<img loading="lazy" src="{src}" width="{IMAGE_W}" height="{h}" alt="{alt}">')
        parts.append(f'<div class="meta">{" · ".join(meta)}</div>{_stats_html(s)}')
        if s.get("why"):
            parts.append(f'<div class="why v-{_esc(s.get("verdict"))}">{_esc(s["why"])}</div>')
    return "".join(parts) + "</div>"


def _verdict_counts(clips: list[Clip]) -> str:
    counts = {v: sum(c.stats.get("verdict") == v for c in clips) for v in VERDICTS}
    counts["unreadable"] = sum(bool(c.error) for c in clips)
    return ", ".join(f"{n} {v}" for v, n in counts.items() if n)


def _group_html(g: Group, page_dir: Path, open_: bool) -> str:
    fd = f" · Fréchet {g.frechet:.1f}" if g.frechet is not None else ""
    count = f"{len(g.clips)} clip{'s' * (len(g.clips) != 1)}"
    info = " · ".join(x for x in (g.subtitle, count, _verdict_counts(g.clips)) if x)
    star = '<span class="fav" title="a favourite: never pruned">★</span> ' if g.kept else ""
    return (
        f'<details{" open" if open_ else ""}><summary>{star}{_esc(g.title)} '
        f'<span class="muted">{_esc(info)}{_esc(fd)}</span></summary>{_commands_html(g, page_dir)}'
        f'<div class="cards">{"".join(_card(c, page_dir) for c in g.clips)}</div></details>'
    )


def _commands_html(g: Group, run_dir: Path) -> str:
    """Under a checkpoint's heading: the command rendering an hour from it, and how to keep it."""
    if g.step is None:  # a render
        return ""
    if g.command is None:
        return ('<div class="cmd muted">The weights of this step were pruned (train.keep_snapshots, '
                'train.keep_last); mark the steps you like with <code>soundalike keep</code> to keep theirs.</div>')
    mark = shlex.join(["soundalike", "keep", str(run_dir), str(g.step)])
    keep = ("a favourite: training never prunes its weights" if g.kept else
            f"keep its weights (never pruned): <code>{_esc(mark)}</code>")
    return (f'<div class="cmd">Render an hour from this checkpoint (on the CPU the tracks begin with these clips; '
            f'without <code>--hold-level off</code> they are held at the data\'s level instead): '
            f'<code>{_esc(g.command)}</code><br>{keep}</div>')


def _overview(groups: list[Group], metrics: list[dict], ref: Reference | None) -> tuple[str, str]:
    """One row a checkpoint: validation bits (the model's unit and at 16-bit resolution, which compares models
    with different outputs), verdicts, Fréchet distance; the trend at a glance."""
    val = {int(m["step"]): m for m in metrics if isinstance(m.get("val_bits"), (int, float))}
    rows = []
    for g in groups:
        v = val.get(g.step, {}) if g.step is not None else {}
        rows.append(f"<tr><td>{'★ ' * g.kept}{_esc(g.title)}</td><td>{_fmt(v.get('val_bits'), '.4f')}</td>"
                    f"<td>{_fmt(v.get('val_bits16'), '.4f')}</td>"
                    f"<td>{_esc(_verdict_counts(g.clips))}</td><td>{_fmt(g.frechet, '.1f')}</td></tr>")
    note = ""
    if ref is not None:
        d = ref.distances(ref.valid)
        note = (f'<p class="small muted">Fréchet: distance of the clips\' log-mel frames to the valid split; '
                f'for scale, the train split scores {_fmt(d["train_split"], ".1f")} and white noise '
                f'{_fmt(d["white_noise"], ".1f")}.</p>')
    head = ("<thead><tr><th>checkpoint</th><th>val bits</th><th>at 16-bit</th><th>verdicts</th><th>Fréchet</th>"
            "</tr></thead>")
    return f'<div class="overview"><table>{head}{"".join(rows)}</table></div>', note


def _data_html(dataset: Path, examples: list[Clip], table: list[Clip], ref: Reference | None,
               page_dir: Path) -> str:
    manifest = Manifest.find(dataset)
    hours = manifest.summary.get("hours", {}) if manifest else {}
    hours = hours if isinstance(hours, dict) else {}
    hours_txt = ", ".join(f"{k} {_fmt(v, '.2f', ' h')}" for k, v in hours.items())
    out = [f'<p>Dataset <code>{_esc(dataset)}</code> <span class="muted">{_esc(hours_txt)}</span></p>']
    if ref is not None:
        d = ref.distances(ref.valid)
        out.append(
            f"<p>Fréchet distance of log-mel frames to the valid split (lower is closer to the real thing): "
            f"the train split scores <b>{_fmt(d['train_split'], '.1f')}</b> (what a perfect model would), "
            f"white noise at the same level <b>{_fmt(d['white_noise'], '.1f')}</b>. Each checkpoint's figure "
            f"is above and in its group's heading; a handful of clips reads somewhat higher than a long "
            f"split.</p>")
    if ref is not None and ref.levels is not None:
        lv = ref.levels.summary()
        hiss = lv["chunk_ranges"]["hiss_db"][1]
        floor = ", ".join(f"{k} {v:.0f}" for k, v in lv["floor_db"].items())
        out.append(
            f"<p>The valid split at the gain the model learns: RMS {_fmt(lv['rms_db'], '.1f')} dBFS, DC "
            f"{_fmt(lv['dc'], '+.4f')}, noise floor {_esc(floor)} dBFS. A clip's <i>hiss</i> is its floor above "
            f"2 kHz against this; the data's own chunks reach {_fmt(hiss, '+.1f')} dB, and a clip more than "
            f"{HISS_DB:g} dB beyond is called <i>hiss</i>.</p>")
    head = "<tr><th>chunk</th><th>sec</th><th>rms dB</th><th>silence</th><th>centroid</th><th>flatness</th>" \
           "<th>ZCR</th><th>clipping</th><th>loop</th><th>clicks/s</th><th>hiss dB</th><th>verdict</th></tr>"
    rows = []
    for c in table:
        s = c.stats
        rows.append(
            f"<tr><td>{_esc(c.wav.name)}</td><td>{_fmt(s.get('seconds'), '.1f')}</td>"
            f"<td>{_fmt(s.get('rms_db'), '.1f')}</td><td>{_fmt(s.get('silence_fraction'), '.0%')}</td>"
            f"<td>{_fmt(s.get('centroid_hz'), '.0f')}</td><td>{_fmt(s.get('flatness'), '.3g')}</td>"
            f"<td>{_fmt(s.get('zcr'), '.3f')}</td><td>{_fmt(s.get('clip_fraction'), '.1%')}</td>"
            f"<td>{_fmt(s.get('loop_repeat_s'), '.1f', ' s')}</td><td>{_fmt(s.get('crackle_per_s'), '.1f')}</td>"
            f"<td>{_fmt(s.get('hiss_db'), '+.1f')}</td><td>{_badge(s, c.error)}</td></tr>")
    out.append("<table>" + head + "".join(rows) + "</table>")
    out.append(f'<div class="cards">{"".join(_card(c, page_dir) for c in examples)}</div>')
    return "".join(out)


def _data_section(dataset: Path, cache: Path) -> tuple[list[Clip], list[Clip], Reference | None]:
    """Chunks whose statistics are shown (valid split first) and the two example chunks among them."""
    try:
        files = dataset_chunks(dataset, "valid") or dataset_chunks(dataset, "train")
        train = dataset_chunks(dataset, "train")
    except UserError:
        return [], [], None
    table = [Clip(f, cache / "data" / f.parent.name / f.stem, {"split": f.parent.name})
             for f in spread(files, DATA_CLIPS)]
    examples = table[:1]
    if train and train[len(train) // 2] not in [c.wav for c in table]:
        middle = train[len(train) // 2]
        examples.append(Clip(middle, cache / "data" / middle.parent.name / middle.stem, {"split": "train"}))
    else:
        examples = table[:2]
    shown = table + [c for c in examples if all(c is not t for t in table)]
    for c in shown:
        _prepare(c, with_frames=False)
    ref = _reference(dataset, cache)
    _judge(shown, ref.levels.as_stored() if ref is not None and ref.levels is not None else None)
    return table, examples, ref


def build_gallery(run_dir: str | Path, renders_dir: str | Path | None = None) -> Path:
    """Write runs/<name>/gallery.html (and its cached pictures) for a run folder; returns the page's path.

    renders_dir defaults to renders/<name>/ beside runs/; it may also be a single render folder.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run folder")
    run = RunFolder(run_dir)
    if not run.looks_like_a_run() and any(run_dir.iterdir()):
        raise UserError(f"{run_dir}: not a run folder (no config.yaml, metrics.jsonl or checkpoints/); the page "
                        "is written into the run folder, so it is not written here")
    cache = run.page_cache
    renders_dir = Path(renders_dir) if renders_dir else run.renders
    if not renders_dir.exists() and renders_dir != run.renders:
        raise UserError(f"{renders_dir}: no such renders folder")

    metrics = read_metrics(run.metrics)
    curves = cache / "curves.png"
    has_curves = bool(metrics) and _fresh(curves, run.metrics)
    if metrics and not has_curves:
        has_curves = curves_png(metrics, curves)

    dataset = _dataset_of(run_dir)
    data_clips, examples, ref = _data_section(dataset, cache) if dataset else ([], [], None)
    renders = _render_groups(renders_dir, cache)
    samples = _sample_groups(run_dir, cache)
    for g in renders + samples:
        for c in g.clips:
            _prepare(c, with_frames=ref is not None)
        _judge(g.clips, ref.levels if ref is not None else None)
        frames = [c.frames for c in g.clips if c.frames is not None]
        if ref is not None and frames and sum(f.n for f in frames) >= 2:
            g.frechet = frechet_distance(sum(frames[1:], frames[0]), ref.valid)

    last = metrics[-1] if metrics else {}
    best = min((m for m in metrics if isinstance(m.get("val_bits"), (int, float))), default=None,
               key=lambda m: m["val_bits"])
    best_txt = None if best is None else f"best validation {best['val_bits']:.4f} bits/sample" + (
        f" ({best['val_bits16']:.4f} at 16-bit resolution)" if isinstance(best.get("val_bits16"), (int, float))
        else "")
    summary = " · ".join(x for x in (
        f"step {last['step']:,}" if last else "",
        f"{last.get('elapsed_s', 0) / 3600:.2f} h of training" if last else "",
        best_txt or "",
        f"page written {time.strftime('%Y-%m-%d %H:%M:%S')}",
    ) if x)
    page = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(run_dir.name)} · soundalike</title><style>{CSS}</style></head><body>",
        f'<h1>{_esc(run_dir.name)}</h1><div class="muted">{_esc(summary)}</div>',
        "<h2>Learning curves and checkpoints</h2>",
    ]
    overview, note = _overview(samples, metrics, ref) if samples else ("", "")
    page.append('<div class="top">' + (
        f'<img class="curves" src="{_link(curves, run_dir)}" width="800" height="256" alt="learning curves">'
        if has_curves else '<p class="muted">No metrics yet.</p>') + f"{overview}</div>{note}")
    page.append("<h2>Renders</h2>")
    page += [_group_html(g, run_dir, i < OPEN_GROUPS) for i, g in enumerate(renders)] or [
        f'<p class="muted">No renders in {_esc(renders_dir)}.</p>']
    page.append("<h2>Samples by checkpoint, newest first</h2>")
    page += [_group_html(g, run_dir, i < OPEN_GROUPS) for i, g in enumerate(samples)] or [
        '<p class="muted">No samples yet.</p>']
    page.append("<h2>Training data</h2>")
    page.append(_data_html(dataset, examples, data_clips, ref, run_dir) if dataset else
                '<p class="muted">No dataset found (config.yaml names none, or its folder is missing).</p>')
    page.append(f"<script>{SELFTEST_JS}</script></body></html>\n")
    out = run.page
    write_text(out, "\n".join(page))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder, runs/<name>")
    parser.add_argument("--renders", metavar="DIR",
                        help="renders to show (default: renders/<name> beside runs/)")


def run(args: argparse.Namespace) -> int:
    page = build_gallery(args.run_dir, args.renders)
    print(f"wrote {page}")
    return 0
