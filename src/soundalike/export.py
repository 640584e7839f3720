"""`soundalike export RUN_OR_CKPT --out DIR`: a trained model as a folder to share, laid out as model hubs take
a model (weights, config.json and a README.md model card with YAML front matter at the top level):

    DIR/model.safetensors          the weights (safetensors: data only, loading it runs no code)
    DIR/config.json                everything else the checkpoint holds but its training state: family,
                                   constructor arguments, quantizer, sample rate, the resolved config, step, ...
    DIR/README.md                  the model card: data, training, NLL beside the no-model baseline, clips
    DIR/spectrogram.png            log-mel spectrogram of the clips
    DIR/samples/sample-NN.wav      a few clips rendered from the exported folder itself

`render`, `evaluate` and `train --init-from` take DIR wherever they take a checkpoint (`checkpoint.load_checkpoint`
reads both). The folder is built beside DIR and moved into place at the end: a kill leaves the old or the new.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from . import checkpoint as ckpt_io
from .atomic import check_folder, write_text
from .dataset import Manifest
from .errors import UserError
from .run_folder import RunFolder

WEIGHTS = "model.safetensors"
CARD = "README.md"
PICTURE = "spectrogram.png"
SAMPLES = "samples"
LAYOUT = 1  # config.json's `soundalike_export`: the version of this folder layout


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="RUN_OR_CKPT",
                   help="a run folder (its best checkpoint), a checkpoint or snapshot file, or an export folder")
    p.add_argument("--out", required=True, help="the folder to write (new, empty, or an earlier export)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    p.add_argument("--name", help="the model's name in the card (default: the run's name)")
    p.add_argument("--clips", type=int, default=3, help="clips rendered for the card (default 3; 0: none)")
    p.add_argument("--clip-seconds", type=float, default=4.0, help="length of each clip (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the clips (default 0)")
    p.add_argument("--data", help="dataset for the card's NLL and data figures (default: the one trained on)")
    p.add_argument("--no-eval", action="store_true", help="leave the NLL out of the card (it reads whole splits)")
    p.add_argument("--device", help="cpu, cuda or cuda:N, for the clips and the NLL (default: CUDA if available)")


def resolve_source(source: str) -> Path:
    """A run folder -> its best (else latest) checkpoint; anything else as given."""
    path = Path(source)
    run = RunFolder(path)
    if path.is_dir() and not (path / ckpt_io.EXPORT_CONFIG).exists() and run.looks_like_a_run():
        for tag in ("best", "latest"):
            if run.checkpoint(tag).is_file():
                return run.checkpoint(tag)
        raise UserError(f"{path}: a run folder without checkpoints/best.pt or latest.pt; name a checkpoint file")
    return path


def _check_out(out: Path, overwrite: bool) -> None:
    check_folder(out, "--out")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not _is_export(out):
        raise UserError(f"--out {out}: is not empty and holds no soundalike export; choose a new or empty folder "
                        "(nothing in it was changed)")
    if not overwrite:
        raise UserError(f"--out {out}: already holds an export; pass --overwrite to replace it")


def _is_export(folder: Path) -> bool:
    try:
        return ckpt_io.EXPORT_MARK in json.loads((folder / ckpt_io.EXPORT_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, UnicodeDecodeError):
        return False


def write_weights(ckpt: dict, folder: Path) -> None:
    """model.safetensors and config.json: the checkpoint's tensors and, generically, everything else in it."""
    from safetensors.torch import save_file

    tensors, described = ckpt_io.split_tensors(ckpt)
    save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt"})  # "pt": the hubs' tag for torch tensors
    config = {ckpt_io.EXPORT_MARK: LAYOUT, "weights": WEIGHTS, **described}
    write_text(folder / ckpt_io.EXPORT_CONFIG, json.dumps(config, indent=2, allow_nan=False) + "\n")


def render_clips(folder: Path, count: int, seconds: float, seed: int, device: str | None) -> list[Path]:
    """Render `count` clips from the export folder itself with `soundalike render` (the audio a user of the
    folder gets), as samples/sample-NN.wav."""
    from . import render

    parser = argparse.ArgumentParser()
    render.add_arguments(parser)
    scratch = Path(tempfile.mkdtemp(prefix=".clips-", dir=folder))
    argv = ["--ckpt", str(folder), "--out", str(scratch), "--count", str(count), "--seconds", f"{seconds:g}",
            "--seed", str(seed), *(["--device", device] if device else [])]
    with contextlib.redirect_stdout(sys.stderr):
        render.Render.start(parser.parse_args(argv)).render()
    (folder / SAMPLES).mkdir()
    clips = [folder / SAMPLES / f"sample-{i:02d}.wav" for i in range(count)]
    for i, clip in enumerate(clips):
        (scratch / f"track-{i:02d}.wav").rename(clip)
    shutil.rmtree(scratch)
    return clips


def _clip_section(folder: Path, clips: list[Path], seconds: float, seed: int, name: str) -> str:
    """The card's Samples section: a spectrogram picture of the clips and their `soundalike stats`."""
    from .gallery import mel_png
    from .stats import clip_stats, load_audio

    if not clips:
        return "No clips were rendered for this card (`--clips 0`).\n"
    audio, rows = [], []
    for clip in clips:
        x, rate = load_audio(clip)
        audio += [x, np.zeros(rate // 4, np.float32)]
        s = clip_stats(x, rate)
        rows.append(f"| [{clip.name}]({SAMPLES}/{clip.name}) | {s['seconds']:.1f} | {s.get('rms_db', -math.inf):.1f} | "
                    f"{s.get('silence_fraction', 1):.0%} | {s.get('centroid_hz', 0):.0f} | {s.get('flatness', 0):.3g} | "
                    f"{s.get('clip_fraction', 0):.1%} | {s['verdict']} |")
    mel_png(np.concatenate(audio[:-1]), rate, folder / PICTURE)
    cmd = shlex.join(["soundalike", "render", "--ckpt", name, "--count", str(len(clips)), "--seconds",
                      f"{seconds:g}", "--seed", str(seed)])
    return (f"![log-mel spectrogram of the clips]({PICTURE})\n\n"
            f"{len(clips)} clips of {seconds:g} s rendered from this folder (`{cmd}`), and their `soundalike stats`:\n\n"
            "| clip | seconds | RMS dBFS | silence | centroid Hz | flatness | clipping | verdict |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows) + "\n")


def _nll_section(folder: Path, data: str | None, device: str | None, skip: bool) -> str:
    from .evaluate import evaluate_checkpoint

    if skip:
        return "Not measured for this card (`--no-eval`): `soundalike evaluate --ckpt . --split test` measures it.\n"
    rows = []
    for split in ("valid", "test"):
        try:
            r = evaluate_checkpoint(str(folder), split, data, device=device)
        except UserError as e:
            return f"Not measured: {e}.\n"
        rows.append(f"| {split} | {r['bits']:.4f} | {r['marginal_entropy_bits']:.4f} | {r['samples']:,} |")
    return ("Negative log-likelihood of every sample of the held-out splits, in bits per sample (the SampleRNN "
            "paper's metric); the marginal entropy of the split's levels is what a model without context "
            "scores.\n\n| split | NLL bits/sample | marginal entropy | samples |\n| --- | --- | --- | --- |\n"
            + "\n".join(rows) + "\n")


def _data_section(ckpt: dict, data: str | None) -> str:
    root = data or ckpt["config"]["data"].get("path")
    manifest = Manifest.find(root) if root else None
    rate = ckpt["sample_rate"]
    if manifest is None:
        return (f"Sampled at {rate} Hz. The dataset (`{root}`) was not at hand when this card was written, so its "
                "size is not given here.\n")
    hours = manifest.summary.get("hours", {}) if isinstance(manifest.summary.get("hours"), dict) else {}
    sources = manifest.data.get("sources", [])
    split_hours = " / ".join(f"{hours.get(s, 0):.2f}" for s in ("train", "valid", "test"))
    return ("| | |\n| --- | --- |\n"
            f"| recordings | {len(sources) if isinstance(sources, list) else '?'} |\n"
            f"| hours (train / valid / test) | {split_hours} |\n"
            f"| sample rate | {manifest.sample_rate} Hz, mono |\n"
            f"| sliced with | `soundalike slice` (one normalization gain for the whole dataset, {manifest.gain:.3g}) |\n")


def _parameters(ckpt: dict) -> int:
    from .models import count_parameters

    return count_parameters(ckpt_io.build_model(ckpt))


def model_card(ckpt: dict, folder: Path, name: str, sections: dict[str, str]) -> str:
    """README.md: YAML front matter (the license left for the user), then what the model is and how it did."""
    cfg, q = ckpt["config"], ckpt["quantizer"]
    front = yaml.safe_dump({"library_name": "soundalike",
                            "tags": ["audio", "music", "audio-generation", "raw-audio", ckpt["family"]]},
                           sort_keys=False)
    hours = (ckpt.get("elapsed_s") or 0) / 3600
    init, step = ckpt.get("init_from"), ckpt.get("step")
    training = ["| | |", "| --- | --- |", f"| steps | {step:,} |" if isinstance(step, int) else "| steps | ? |",
                f"| training time | {hours:.2f} h (optimizer steps only) |",
                f"| batch, TBPTT length | {cfg['train'].get('batch_size')}, {cfg['train'].get('seq_len')} samples |",
                f"| learning rate | {cfg['train'].get('lr')} |"]
    if isinstance(ckpt.get("best_val_bits"), (int, float)) and math.isfinite(ckpt["best_val_bits"]):
        training.append(f"| best validation NLL during training | {ckpt['best_val_bits']:.4f} bits/sample |")
    if isinstance(init, dict):
        training.append(f"| started from | `{Path(str(init.get('path'))).name}` (step {init.get('step')}, trained on "
                        f"`{init.get('data')}`) |")
    model = cfg["model"]
    return (
        "---\n"
        "# license: fill in before sharing, e.g. cc-by-nc-4.0 (https://hf.co/docs/hub/repositories-licenses); mind\n"
        "# the rights to the recordings the model learned from.\n"
        "license:\n" + front + "---\n\n"
        f"# {name}\n\n"
        f"A {ckpt['family']} model of raw audio ({_parameters(ckpt):,} parameters) that generates music one sample "
        f"at a time, at {ckpt['sample_rate']} Hz in {q['levels']} {q['kind']} levels, trained with soundalike on "
        "one artist's recordings.\n\n"
        "## Use\n\n```\n"
        f"soundalike render --ckpt {folder.name} --seconds 60 --count 4\n"
        f"soundalike evaluate --ckpt {folder.name} --split test --data DATASET\n"
        f"soundalike train --config CONFIG --init-from {folder.name}     # a new artist, starting from this one\n"
        "```\n\n"
        "`model.safetensors` holds the weights, `config.json` everything else needed to rebuild and render the "
        "model (constructor arguments, quantizer, sample rate, the training config); loading either runs no "
        "code.\n\n"
        f"## Model\n\n```yaml\n{yaml.safe_dump({'model': model}, sort_keys=False)}```\n\n"
        f"## Training data\n\n{sections['data']}\n"
        "## Training\n\n" + "\n".join(training) + "\n\n"
        f"## Evaluation\n\n{sections['nll']}\n"
        f"## Samples\n\n{sections['clips']}\n"
        "## License\n\nNot chosen yet: fill in the `license` field at the top of this file before sharing.\n"
    )


def export(source: Path, out: Path, name: str | None = None, clips: int = 3, clip_seconds: float = 4.0,
           seed: int = 0, data: str | None = None, evaluate: bool = True, device: str | None = None,
           overwrite: bool = False) -> Path:
    """Write the export folder `out` of checkpoint `source` (see the module's docstring); returns `out`."""
    if not 0 <= clips <= 64:
        raise UserError(f"--clips must be between 0 and 64, got {clips}")
    if not 0 < clip_seconds <= 600:
        raise UserError(f"--clip-seconds must be a positive number of seconds up to 600, got {clip_seconds}")
    if not 0 <= seed < 2**63:
        raise UserError(f"--seed must be between 0 and 2**63 - 1, got {seed}")
    _check_out(out, overwrite)
    ckpt = ckpt_io.load_checkpoint(source)
    name = name or ckpt["config"].get("name") or source.stem
    out.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    try:
        write_weights(ckpt, build)
        # The card's figures come from the folder itself: what a user of it gets.
        sections = {"data": _data_section(ckpt, data),
                    "nll": _nll_section(build, data, device, skip=not evaluate),
                    "clips": _clip_section(build, render_clips(build, clips, clip_seconds, seed, device) if clips
                                           else [], clip_seconds, seed, out.name)}
        write_text(build / CARD, model_card(ckpt, out, name, sections))
        _replace(build, out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return out


def _replace(build: Path, out: Path) -> None:
    """Move the finished folder onto `out`; an earlier export there is removed only after the move."""
    old = None
    if out.is_dir() and any(out.iterdir()):
        old = out.rename(out.with_name(f".{out.name}.old-{build.name.rsplit('-', 1)[-1]}"))
    elif out.is_dir():
        out.rmdir()
    build.rename(out)
    if old is not None:
        shutil.rmtree(old)


def run(args: argparse.Namespace) -> int:
    out = export(resolve_source(args.source), Path(args.out), args.name, args.clips, args.clip_seconds, args.seed,
                 args.data, not args.no_eval, args.device, args.overwrite)
    sizes = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
    print(f"wrote {out}: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sizes.items()))
    return 0
