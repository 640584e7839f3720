"""Fine-tuning against training from scratch on the demo corpus (`train --init-from`): validation NLL after 2,
5 and 10 minutes of training.

1. The demo corpus (seed 0) and a differently seeded one (seed 1: the same instruments and key, other
   compositions), written by `soundalike demo-corpus` and sliced at 16 kHz.
2. `configs/demo.yaml` trained `--pretrain-minutes` on the seed-1 corpus.
3. On the demo corpus, from scratch and `--init-from` that model, side by side (so both see the same machine
   load), in segments ending at 2, 5 and 10 minutes of wall time: each segment resumes the run exactly and
   ends with a validation over the whole validation split (not counted in the time).

    python tools/bench_finetune.py [--work data/finetune] [--pretrain-minutes 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKS_MIN = (2, 5, 10)


def soundalike(*argv: str) -> None:
    subprocess.run([sys.executable, "-m", "soundalike", *argv], check=True)


def train_cmd(dataset: Path, runs: Path, name: str, seconds: float, threads: int, init: Path | None) -> list[str]:
    sets = {"data.path": dataset, "run_root": runs, "train.threads": threads, "train.sample_count": 0,
            "train.val_every": 10**9, "train.ckpt_every": 10**9}
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "demo.yaml"), "--name", name,
           "--max-time", f"{seconds:g}s", *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]
    return cmd + (["--init-from", str(init)] if init else [])


def last_validation(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "val_bits" in r][-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default=str(ROOT / "data" / "finetune"))
    p.add_argument("--pretrain-minutes", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1, help="train.threads of each run")
    args = p.parse_args()
    work = Path(args.work).resolve()
    data = {}
    for seed in (0, 1):
        raw, data[seed] = work / f"seed{seed}" / "raw", work / f"seed{seed}" / "dataset"
        soundalike("demo-corpus", "--out", str(raw), "--seed", str(seed))
        soundalike("slice", str(raw), "--out", str(data[seed]), "--sample-rate", "16000")
    runs = work / "runs"
    pretrained = runs / "pretrain" / "checkpoints" / "latest.pt"
    if not pretrained.exists():
        subprocess.run(train_cmd(data[1], runs, "pretrain", args.pretrain_minutes * 60, args.threads, None),
                       check=True)
    from soundalike.evaluate import evaluate_checkpoint

    before = evaluate_checkpoint(str(pretrained), "valid", data=str(data[0]))  # the pretrained model, untouched
    results = {"pretrain": last_validation(runs / "pretrain"), "scratch": [],
               "finetune": [{"minutes": 0, "step": 0, "val_bits": before["bits"]}],
               "marginal_entropy_bits": before["marginal_entropy_bits"]}
    done = 0
    for minutes in MARKS_MIN:
        procs = {name: subprocess.Popen(train_cmd(data[0], runs, name, (minutes - done) * 60, args.threads, init))
                 for name, init in (("scratch", None), ("finetune", pretrained))}
        for name, proc in procs.items():
            if proc.wait():
                sys.exit(f"{name} failed")
            results[name].append({"minutes": minutes, **last_validation(runs / name)})
        done = minutes
    (work / "finetune.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n| minutes of training | from scratch | fine-tuned |\n| --- | --- | --- |")
    print(f"| 0 | {results['marginal_entropy_bits']:.3f} (marginal entropy) | {before['bits']:.3f} |")
    for s, f in zip(results["scratch"], results["finetune"][1:]):
        print(f"| {s['minutes']} | {s['val_bits']:.3f} (step {s['step']:,}) | {f['val_bits']:.3f} (step {f['step']:,}) |")
    pre = results["pretrain"]
    print(f"pretrained {pre['step']:,} steps on the seed-1 corpus; its own validation {pre['val_bits']:.3f} bits")


if __name__ == "__main__":
    main()
