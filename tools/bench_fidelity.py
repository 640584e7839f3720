"""Fidelity of renders against the data, per output option, at the same CPU budget: the figures of the
README's "Fidelity" table.

For each config: train it on DATA for the same CPU time with one thread (`train.max_cpu_time`, so that configs
trained at once, or beside other work, get the same budget; `--parallel` at a time),
evaluate the best checkpoint's validation NLL (bits per sample in the model's own unit and at 16-bit
resolution), render `--count` tracks of `--seconds` at each sampling setting, and run `soundalike stats` on
them against the dataset (verdicts, hiss floor, DC, level, Fréchet distance); the dataset's own valid
clips are measured the same way, and so are `--data-draws` sets of excerpts of the train split cut like the
renders (`--count` x `--seconds`: what a perfect model would render, so the spread of each figure for real
music of that length), and per config the same excerpts through its levels (`perfect`: a perfect model of
that representation, so what 8-bit levels or pre-emphasis cost before any model error), and a picture puts the spectrograms of a data clip and of each config's
first track side by side. Rendering speed is the real-time factor of the whole `render` command at batch
`--count` with two threads. Prints one JSON object; the runs, renders, reports and picture stay under --out.

    python tools/bench_fidelity.py --data data/demo/dataset --out runs-fidelity/demo \\
        --configs demo demo-mulaw=demo,data.pre_emphasis=0 demo-16bit demo-mol --cpu-minutes 15 --sampling 1.0

A `--configs` entry `LABEL=CONFIG,key=value,...` trains CONFIG with overrides under the name LABEL
(`demo-plain=demo,train.ema=0`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from soundalike.checkpoint import load_checkpoint, quantizer_of
from soundalike.data import AudioDataset
from soundalike.emphasis import decode, encode
from soundalike.quantize import Quantizer
from soundalike.stats import dataset_chunks, together

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def soundalike(*args: str, threads: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.run([PY, "-m", "soundalike", *args], cwd=ROOT, env=env, check=True, capture_output=True,
                          text=True)


def variant(spec: str) -> tuple[str, str, list[str]]:
    """`--configs` entry -> (label, config name, overrides): `demo`, or `LABEL=CONFIG,key=value,...` for a
    config with overrides (`demo-ema=demo,train.ema=0.999`)."""
    label, _, rest = spec.partition("=")
    if not rest:
        return spec, spec, []
    config, *sets = rest.split(",")
    return label, config, sets


def train(configs: list[str], data: Path, out: Path, minutes: float, parallel: int) -> None:
    """Train every config for `minutes` of CPU time with one thread, `parallel` at a time."""
    pending = list(configs)
    running: list[subprocess.Popen] = []
    while pending or running:
        while pending and len(running) < parallel:
            name, config, sets = variant(pending.pop(0))
            if (out / "runs" / name / "checkpoints" / "best.pt").exists():
                continue
            log = open(out / f"train-{name}.log", "w")  # noqa: SIM115 (closed with the process)
            running.append(subprocess.Popen(
                [PY, "-m", "soundalike", "train", "--config", str(ROOT / "configs" / f"{config}.yaml"),
                 "--set", f"data.path={data}", "--set", f"run_root={out / 'runs'}", "--set", f"name={name}",
                 "--set", "train.max_time=", "--set", f"train.max_cpu_time={minutes * 60:g}s",
                 "--set", "train.threads=1", "--set", "train.val_every=1000000000",  # validated once, at the end
                 "--set", "train.sample_count=0", *[a for kv in sets for a in ("--set", kv)]],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"}))
        time.sleep(2)
        for p in list(running):
            if p.poll() is not None:
                running.remove(p)
                if p.returncode:
                    raise SystemExit(f"training {p.args} failed with {p.returncode}")


def final_validation(run: Path, data: Path) -> dict | None:
    """`soundalike evaluate`'s figures on the valid split from the validation training ran when it stopped (the
    same `evaluate_nll`; no second pass over the split) and the split's marginal entropy; None if it has none."""
    from soundalike.data import AudioDataset
    from soundalike.evaluate import marginal_entropy_bits

    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = next((r for r in reversed(rows) if r.get("step") == ckpt["step"] and "val_bits16" in r), None)
    if last is None:
        return None
    q = quantizer_of(ckpt)
    levels = AudioDataset(data, q, "valid").data
    return {"step": ckpt["step"], "bits": last["val_bits"], "bits16": last["val_bits16"],
            "marginal_entropy_bits16": marginal_entropy_bits(levels, q.levels, q.log2_width16())}


def summary(report: dict) -> dict:
    """The figures of a `soundalike stats --json` report: verdict counts and the clips' mean figures."""
    clips = report["clips"]
    row: dict = {"verdicts": {k: v for k, v in report["verdicts"].items() if v}}
    for key in ("dc_offset", "dc_diff", "rms_db", "level_db", "hiss_db", "crackle_per_s"):
        values = [c[key] for c in clips if isinstance(c.get(key), (int, float))]
        if values:
            row[key] = round(float(np.mean(values)), 4 if key.startswith("dc") else 2)
    bands = [c["hiss_bands_db"] for c in clips if isinstance(c.get("hiss_bands_db"), dict)]
    if bands:
        row["hiss_bands_db"] = {b: round(float(np.mean([x[b] for x in bands if isinstance(x.get(b), (int, float))])), 1)
                                for b in bands[0]}
    pooled = report.get("together") or together(clips)  # reports of before `together` have the clips' figures
    if pooled and pooled.get("level_db") is not None:
        row["level_together_db"] = pooled["level_db"]
    if "frechet" in report:
        row["frechet"] = report["frechet"].get("generated")
    if "reference" in report:
        row["reference"] = report["reference"]
    return row


def data_excerpts(data: Path, folder: Path, count: int, seconds: float, seed: int, split: str = "train",
                  quantizer: Quantizer | None = None) -> list[Path]:
    """`count` excerpts of `seconds` of continuous audio from the split's recordings, at random places (seed),
    at the dataset's gain (the level the model learnt), written as float WAVs to `folder`: what a perfect
    model's renders would be, to measure like them. With a quantizer, the excerpts are its levels decoded (a
    perfect model of that representation: 8-bit levels, pre-emphasis); the same seed cuts the same places.

    Chunks of one recording join where the next starts no later than the last ends (the slicer's overlap);
    an excerpt lies inside one such run.
    """
    import soundfile as sf

    from soundalike.dataset import Manifest

    manifest = Manifest.load(data)
    rate, runs, by_source = manifest.sample_rate, [], {}
    for c in manifest.split(split):
        by_source.setdefault(c.source, []).append(c)
    for chunks in by_source.values():
        chunks.sort(key=lambda c: c.offset)
        run = [chunks[0]]
        for c in chunks[1:]:
            if c.offset <= run[-1].offset + run[-1].samples / rate + 1e-3:
                run.append(c)
            else:
                runs.append(run)
                run = [c]
        runs.append(run)
    length = np.array([r[-1].offset + r[-1].samples / rate - r[0].offset for r in runs])
    room = np.maximum(length - seconds, 0.0)
    if not room.any():
        raise SystemExit(f"{data}: no {seconds} s of continuous audio in the {split} split")
    rng, n, paths = np.random.default_rng(seed), int(seconds * rate), []
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        j = rng.choice(len(runs), p=room / room.sum())
        run, start = runs[j], runs[j][0].offset + rng.uniform(0.0, room[j])
        audio = np.zeros(n, dtype=np.float32)
        for c in run:
            at = round((c.offset - start) * rate)
            if at < n and at + c.samples > 0:
                x, _ = sf.read(c.path, dtype="float32", always_2d=True)
                x = x.mean(axis=1)
                audio[max(at, 0):at + len(x)] = x[max(-at, 0):n - at]
        audio *= np.float32(manifest.gain)
        if quantizer is not None:
            audio = decode(encode(np.clip(audio, -1.0, 1.0), quantizer), quantizer)[0]
        paths.append(folder / f"excerpt-{i:02d}.wav")
        sf.write(paths[-1], audio, rate, subtype="FLOAT")
    return paths


def representation(q: Quantizer) -> str:
    """A quantizer's name in file names: mulaw256, linear65536-e0.85."""
    return f"{q.kind}{q.levels}" + (f"-e{q.pre_emphasis:g}" if q.pre_emphasis else "")


def data_baseline(data: Path, out: Path, count: int, seconds: float, draws: int,
                  quantizer: Quantizer | None = None) -> dict:
    """`draws` sets of `count` x `seconds` data excerpts (seeds 0..draws-1; through `quantizer` if given) judged
    like renders: per draw the same row as `render_and_measure`'s, and the range of each figure over the
    draws."""
    rows, tag = [], "" if quantizer is None else "-" + representation(quantizer)
    for seed in range(draws):
        name = f"data{tag}-{count}x{seconds:g}s-{seed}"
        done = out / "reports" / f"{name}.row.json"
        if not done.exists():
            paths = data_excerpts(data, out / "renders" / name, count, seconds, seed, quantizer=quantizer)
            report = out / "reports" / f"{name}.json"
            soundalike("stats", *map(str, paths), "--reference", str(data), "--json", str(report))
            done.write_text(json.dumps(summary(json.loads(report.read_text()))))
        rows.append(json.loads(done.read_text()))
    spans = {}
    for key in ("level_db", "level_together_db", "dc_diff", "hiss_db", "crackle_per_s", "frechet"):
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        if values:
            spans[key] = [min(values), float(np.median(values)), max(values)]
    return {"count": count, "seconds": seconds, "draws": rows, "min_median_max": spans}


def render_and_measure(name: str, ckpt: Path, data: Path, out: Path, count: int, seconds: float,
                       setting: str, threads: int = 2) -> dict:
    held = setting.endswith("~")
    sampling, _, offset = setting.removesuffix("~").partition("@")
    temperature, _, min_p = sampling.partition(":")
    folder = out / "renders" / f"{name}@{setting}"
    done = out / "reports" / f"{name}@{setting}.row.json"
    report_path = out / "reports" / f"{name}@{setting}.json"
    if done.exists():  # measured by an earlier run of this tool
        row = json.loads(done.read_text())
        if "level_together_db" not in row and report_path.exists():  # a row of before the pooled level
            row.update(summary(json.loads(report_path.read_text())))
        return row
    args = ["render", "--ckpt", str(ckpt), "--count", str(count), "--seconds", str(seconds), "--seed", "1",
            "--temperature", temperature, "--min-p", min_p or "0", "--out", str(folder), "--threads", str(threads),
            "--overwrite"]
    level = None
    if offset:  # a level asked of a model with a level input, in dB from its data's level
        model = load_checkpoint(ckpt)["model"]
        if "level_default" not in model:
            return {"setting": setting, "skipped": "no level input"}
        level = round(float(model["level_default"]) + float(offset), 2)
        args += ["--level", str(level)]
    if held:  # held at the data's level: the checkpoint's record, or the train split's (older checkpoints)
        ck = load_checkpoint(ckpt)
        target = ck.get("data_level_db")
        if target is None:
            target = AudioDataset(data, quantizer_of(ck), "train").level_db
        args += ["--hold-level", f"{target:.2f}"]
    else:  # the model's own level (render holds the data's by default)
        args += ["--hold-level", "off"]
    t = time.perf_counter()
    soundalike(*args)
    wall = time.perf_counter() - t
    soundalike("stats", str(folder), "--reference", str(data), "--json", str(report_path))
    row = {"setting": setting, "realtime_factor": round(count * seconds / wall, 2), "level_asked_dbfs": level,
           **summary(json.loads(report_path.read_text()))}
    done.write_text(json.dumps(row))
    return row


def picture(data: Path, out: Path, tracks: dict[str, Path], seconds: float) -> Path:
    """Spectrograms of a data clip and of each config's first track, one above the other."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf

    clip = dataset_chunks(data, "valid")[0]
    rows = [("data: " + clip.name, clip), *tracks.items()]
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 2.1 * len(rows)), squeeze=False)
    for ax, (label, path) in zip(axes[:, 0], rows):
        audio, rate = sf.read(path, dtype="float32", frames=int(seconds * 48000), always_2d=True)
        ax.specgram(audio.mean(axis=1)[:int(seconds * rate)], NFFT=1024, Fs=rate, noverlap=768, cmap="magma",
                    vmin=-130, vmax=-20)
        ax.set_title(label, fontsize=9)
        ax.set_ylabel("Hz")
    fig.tight_layout()
    path = out / "spectrograms.png"
    fig.savefig(path, dpi=80)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--configs", nargs="+", default=["demo", "demo-16bit", "demo-mol"],
                   help="config names, or LABEL=CONFIG,key=value,... for one with overrides")
    p.add_argument("--cpu-minutes", type=float, default=15.0, help="training CPU time per config (one thread)")
    p.add_argument("--parallel", type=int, default=2, help="configs trained at once")
    p.add_argument("--sampling", nargs="+", default=["1.0"],
                   help="TEMPERATURE[:MIN_P][@DB][~] settings to render; @DB asks a model with a level input for its "
                        "data's level + DB (`render --level`); ~ holds the tracks at the data's level "
                        "(`render --hold-level`; without it: --hold-level off, the model's own level)")
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--data-draws", type=int, default=5,
                   help="sets of --count x --seconds train-split excerpts judged like the renders (the baseline)")
    args = p.parse_args()
    data, out = args.data.resolve(), args.out.resolve()
    (out / "reports").mkdir(parents=True, exist_ok=True)
    train(args.configs, data, out, args.cpu_minutes, args.parallel)

    data_report = out / "reports" / "data.json"
    if not data_report.exists():
        valid = [str(c) for c in dataset_chunks(data, "valid")]
        soundalike("stats", *valid[:24], "--reference", str(data), "--json", str(data_report))
    result = {"data": str(data), "cpu_minutes": args.cpu_minutes, "data_clips": summary(json.loads(data_report.read_text())),
              "data_excerpts": data_baseline(data, out, args.count, args.seconds, args.data_draws), "configs": []}
    tracks = {}
    for name in [variant(spec)[0] for spec in args.configs]:
        ckpt = out / "runs" / name / "checkpoints" / "best.pt"
        saved = out / "reports" / f"{name}.evaluate.json"
        if not saved.exists():
            saved.write_text(json.dumps(final_validation(out / "runs" / name, data)
                                        or json.loads(soundalike("evaluate", "--ckpt", str(ckpt), "--split",
                                                                 "valid", "--json").stdout)))
        ev = json.loads(saved.read_text())
        q = quantizer_of(load_checkpoint(ckpt))
        row = {"config": name, "step": ev["step"], "valid_bits": round(ev["bits"], 4),
               "valid_bits16": round(ev["bits16"], 4), "marginal_bits16": round(ev["marginal_entropy_bits16"], 4),
               "perfect": {"representation": representation(q),
                           **data_baseline(data, out, args.count, args.seconds, args.data_draws, q)},
               "renders": []}
        for setting in args.sampling:
            row["renders"].append(render_and_measure(name, ckpt, data, out, args.count, args.seconds, setting))
            print(json.dumps({"config": name, **row["renders"][-1]}), file=sys.stderr)
        tracks[f"{name} @ {args.sampling[0]}"] = out / "renders" / f"{name}@{args.sampling[0]}" / "track-00.wav"
        result["configs"].append(row)
    result["picture"] = str(picture(data, out, tracks, args.seconds))
    (out / "fidelity.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
