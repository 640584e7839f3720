"""What block sparsity costs in quality: a dense model and pruned ones trained for the same steps on DATA.

Each variant is a config plus `--set` overrides (the `sparsity` schedule, as fractions of `--steps`), trained
`--steps` steps with one thread (`--parallel` variants at once; a masked dense product costs the same per step
as the dense one, so equal steps are equal training compute), then: the validation NLL the run measured at its
last step (the whole valid split, as `soundalike evaluate`), the fraction of zero 16 x 1 blocks of its
prunable matrices, `--count` renders of `--seconds` (seed 1, all variants at once) and their `soundalike
stats` against the data (verdicts, hiss, crackle, Fréchet distance). Runs already trained or rendered in --out
are reused. Prints one JSON object; runs, renders and reports stay in --out.

    python tools/bench_sparse_quality.py --data data/demo/dataset --out runs-sparse --steps 300
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
# name: (config, sparsity schedule as (target, start, end) fractions of the steps, or None)
VARIANTS = {
    "dense": ("samplernn-3tier", None),
    "sparse90-early": ("samplernn-3tier-sparse", (0.9, 0.1, 0.4)),
    "sparse90-late": ("samplernn-3tier-sparse", (0.9, 0.2, 0.7)),
}


def soundalike(*args: str) -> str:
    return subprocess.run([PY, "-m", "soundalike", *args], cwd=ROOT, check=True, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout


def train_args(name: str, data: Path, out: Path, steps: int, batch: int, seq_len: int) -> list[str]:
    config, schedule = VARIANTS[name]
    sets = {"data.path": data, "run_root": out / "runs", "name": name, "train.threads": 1,
            "train.sample_count": 0, "train.max_time": '""', "train.batch_size": batch, "train.seq_len": seq_len,
            "train.val_every": steps, "train.ckpt_every": steps, "train.log_every": 10}
    if schedule:
        target, start, end = schedule
        sets.update({"sparsity.target": target, "sparsity.start": round(start * steps),
                     "sparsity.end": round(end * steps), "sparsity.every": max(1, steps // 50)})
    return ["-m", "soundalike", "train", "--config", str(ROOT / "configs" / f"{config}.yaml"), "--max-steps",
            str(steps), *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]


def finished(name: str, args) -> bool:
    return any(row.get("step") == args.steps and "val_bits" in row for row in metrics(name, args))


def metrics(name: str, args) -> list[dict]:
    path = args.out / "runs" / name / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def train(names: list[str], args) -> None:
    """Train the variants not trained yet (by an earlier run of this tool), `args.parallel` at a time."""
    pending, running = [n for n in names if not finished(n, args)], {}
    while pending or running:
        while pending and len(running) < args.parallel:
            name = pending.pop(0)
            log = open(args.out / f"train-{name}.log", "w")  # noqa: SIM115 (closed with the process)
            running[name] = (subprocess.Popen([PY, *train_args(name, args.data, args.out, args.steps, args.batch,
                                                                 args.seq_len)], cwd=ROOT, stdout=log,
                                              stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"}),
                             log)
        time.sleep(2)
        for name, (p, log) in list(running.items()):
            if p.poll() is None:
                continue
            log.close()
            del running[name]
            if p.returncode:
                raise SystemExit(f"training {name} failed with {p.returncode}: see {args.out}/train-{name}.log")


def render(names: list[str], args) -> None:
    """`--count` renders of `--seconds` per variant (seed 1, one thread each, all at once) and their stats."""
    procs = []
    for name in names:
        ckpt = args.out / "runs" / name / "checkpoints" / "latest.pt"
        folder = args.out / "renders" / name
        if (args.out / f"stats-{name}.json").exists():
            continue
        procs.append((name, folder, subprocess.Popen(
            [PY, "-m", "soundalike", "render", "--ckpt", str(ckpt), "--count", str(args.count), "--seconds",
             str(args.seconds), "--seed", "1", "--out", str(folder), "--threads", "1", "--overwrite",
             "--hold-level", "off"], cwd=ROOT,  # the pruned models' own level, as before the hold was the default
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})))
    for name, folder, p in procs:
        if p.wait():
            raise SystemExit(f"rendering {name} failed with {p.returncode}")
        soundalike("stats", str(folder), "--reference", str(args.data), "--json", str(args.out / f"stats-{name}.json"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--count", type=int, default=2)
    p.add_argument("--seconds", type=float, default=4.0)
    args = p.parse_args()
    args.data, args.out = args.data.resolve(), args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    train(args.variants, args)
    render(args.variants, args)

    from soundalike.checkpoint import build_model, load_checkpoint
    from soundalike.sparsity import zero_blocks

    result = {"data": str(args.data), "steps": args.steps, "batch": args.batch, "seq_len": args.seq_len,
              "variants": []}
    for name in args.variants:
        rows = metrics(name, args)
        val = [r for r in rows if "val_bits" in r][-1]
        model = build_model(load_checkpoint(args.out / "runs" / name / "checkpoints" / "latest.pt"))
        stats = json.loads((args.out / f"stats-{name}.json").read_text())
        clips = stats["clips"]

        def mean(key: str, clips=clips):
            values = [c[key] for c in clips if isinstance(c.get(key), (int, float))]
            return round(sum(values) / len(values), 2) if values else None

        result["variants"].append({
            "variant": name, "schedule": VARIANTS[name][1], "step": val["step"],
            "train_seconds": round(val.get("elapsed_s", rows[-1].get("elapsed_s", 0))),
            "valid_bits": round(val["val_bits"], 4), "zero_blocks": round(zero_blocks(model), 4),
            "verdicts": {k: v for k, v in stats["verdicts"].items() if v}, "hiss_db": mean("hiss_db"),
            "crackle_per_s": mean("crackle_per_s"), "level_db": mean("level_db"),
            "frechet": stats.get("frechet", {}).get("generated")})
        print(json.dumps(result["variants"][-1]), file=sys.stderr)
    (args.out / "quality.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
