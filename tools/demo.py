"""The end-to-end demo behind `make demo`: demo corpus -> slice -> train (10 min on CPU) -> evaluate -> render,
then the command that puts the model on the radio.

Each step reuses what an earlier run left (the corpus, the dataset, a finished or interrupted training run), so
running it again is cheap and a killed demo resumes. Prints the validation NLL against the marginal entropy
and where the rendered tracks are.

    python tools/demo.py [--minutes-of-training 10] [--tracks 4] [--seconds 20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soundalike.atomic import write_json
from soundalike.cli import main as soundalike

ROOT = Path(__file__).resolve().parents[1]


def step(title: str, argv: list[str]) -> None:
    print(f"\n== {title}: soundalike {' '.join(argv)}", flush=True)
    code = soundalike(argv)
    if code:
        sys.exit(code)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes-of-training", type=float, default=10.0)
    p.add_argument("--tracks", type=int, default=4)
    p.add_argument("--seconds", type=float, default=20.0)
    args = p.parse_args()

    raw, dataset = ROOT / "data" / "demo" / "raw", ROOT / "data" / "demo" / "dataset"
    step("demo corpus", ["demo-corpus", "--out", str(raw)])
    step("slice", ["slice", str(raw), "--out", str(dataset), "--sample-rate", "16000"])
    step("train", ["train", "--config", str(ROOT / "configs" / "demo.yaml"),
                   "--set", f"data.path={dataset}", "--set", f"run_root={ROOT / 'runs'}",
                   "--max-time", f"{args.minutes_of_training * 60:.0f}s"])
    best = ROOT / "runs" / "demo" / "checkpoints" / "best.pt"
    from soundalike.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(str(best), "valid")
    gap = result["marginal_entropy_bits"] - result["bits"]
    print(f"\nvalidation NLL {result['bits']:.3f} bits/sample; marginal entropy of the validation split "
          f"{result['marginal_entropy_bits']:.3f} bits; {gap:.3f} bits below it")
    write_json(ROOT / "runs" / "demo" / "demo-result.json", result)
    step("render", ["render", "--ckpt", str(best), "--seconds", str(args.seconds), "--count", str(args.tracks),
                    "--out", str(ROOT / "renders" / "demo" / "make-demo")])
    print(f"\nlisten: {ROOT / 'renders' / 'demo' / 'make-demo'}\nlook:   {ROOT / 'runs' / 'demo' / 'gallery.html'}")
    print(f"radio:  {ROOT / '.venv' / 'bin' / 'soundalike'} radio --ckpt {best}   # then open http://127.0.0.1:8000/")


if __name__ == "__main__":
    main()
