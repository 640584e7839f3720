"""Peak memory of `render.py` against the length rendered: streaming must keep it constant.

Renders `--seconds` (several lengths) from a checkpoint, each in its own `render.py` process, and reports the
peak resident set size (ru_maxrss of that process) and the wall time of each. Without `--ckpt`, a checkpoint
of the config (default: the demo config) with random weights is made in a temporary folder. Prints JSON.

    python tools/bench_render_memory.py [--seconds 10,600] [--ckpt runs/demo/checkpoints/best.pt] [--count 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from soundalike import models
from soundalike.checkpoint import model_payload, save_checkpoint
from soundalike.config import load_config
from soundalike.quantize import Quantizer

ROOT = Path(__file__).resolve().parents[1]


def random_checkpoint(config: Path, path: Path) -> Path:
    cfg = load_config(config)
    torch.manual_seed(0)
    model = models.from_config(cfg)
    quantizer = Quantizer(cfg.data.quantization, cfg.data.q_levels)
    save_checkpoint(path, model_payload(model, quantizer, 16000, cfg.to_dict()))
    return path


def render_peak(ckpt: Path, seconds: float, count: int, out: Path) -> dict:
    """Run one render in a child process -> its peak RSS (MB) and wall time."""
    cmd = [sys.executable, str(ROOT / "render.py"), "--ckpt", str(ckpt), "--seconds", str(seconds),
           "--count", str(count), "--seed", "1", "--out", str(out)]
    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: the progress bar would fill a pipe
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            log.seek(0)
            sys.exit(f"render failed: {log.read().strip()[-2000:]}")
    return {"seconds": seconds, "tracks": count, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "wall_s": round(wall, 1), "realtime_x_per_track": round(seconds / wall, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", default="10,600", help="lengths to render, comma-separated")
    p.add_argument("--ckpt", type=Path, help="checkpoint (default: random weights of --config)")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml")
    p.add_argument("--count", type=int, default=1)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.ckpt or random_checkpoint(args.config, Path(tmp) / "random.pt")
        rows = [render_peak(ckpt, float(s), args.count, Path(tmp) / f"out-{s}") for s in args.seconds.split(",")]
    peaks = [r["peak_rss_mb"] for r in rows]
    print(json.dumps({"checkpoint": str(args.ckpt or f"random weights of {args.config.name}"), "rows": rows,
                      "peak_rss_spread_mb": round(max(peaks) - min(peaks), 1)}, indent=1))


if __name__ == "__main__":
    main()
