"""How long `train` takes to exit after SIGTERM sent in the middle of a validation (what a scheduler's grace
period must cover), and whether `latest` then holds the step it stopped at. Prints JSON.

    python tools/bench_stop.py --data data/demo/dataset             # samplernn-3tier at dim 256, batch 16
    python tools/bench_stop.py --src /path/to/other/checkout/src    # the same run with another version's code
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/demo/dataset", help="a sliced dataset")
    p.add_argument("--src", default=str(ROOT / "src"), help="the soundalike package's folder to run")
    p.add_argument("--val-every", type=int, default=30)
    p.add_argument("--after", type=float, default=2.0, help="seconds into the validation the signal is sent")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        sets = {"data.path": str(Path(args.data).resolve()), "run_root": str(runs), "name": "stop",
                "model.dim": 256, "train.batch_size": 16, "train.log_every": args.val_every,
                "train.val_every": args.val_every, "train.sample_count": 2, "train.sample_seconds": 2.0}
        # Through cli.main rather than `-m soundalike`, which versions before 2026-11-30 lack.
        entry = "import sys; from soundalike.cli import main; sys.exit(main(sys.argv[1:]))"
        cmd = [sys.executable, "-c", entry, "train", "--config", str(ROOT / "configs" / "samplernn-3tier.yaml"),
               *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONPATH": args.src})
        metrics = runs / "stop" / "metrics.jsonl"
        # The row of the validation step's training loss is written just before its validation starts.
        while not (metrics.exists() and f'"step": {args.val_every},' in metrics.read_text()):
            if proc.poll() is not None:
                raise SystemExit("training ended before its first validation")
            time.sleep(0.05)
        time.sleep(args.after)
        sent = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait()
        took = time.perf_counter() - sent
        latest = runs / "stop" / "checkpoints" / "latest.pt"
        step = torch.load(latest, weights_only=True)["step"] if latest.exists() else None
        print(json.dumps({"src": args.src, "exit_code": code, "seconds_to_exit_after_sigterm": round(took, 2),
                          "latest_step": step, "signal_sent_at_step": args.val_every}))


if __name__ == "__main__":
    main()
