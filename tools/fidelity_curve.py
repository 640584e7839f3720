"""How a run's renders move as it trains: level, DC, hiss, verdicts and Fréchet distance of every numbered
checkpoint's renders against the data, beside its validation NLL.

For each `checkpoints/step-*.pt` of each RUN (and its `latest.pt`), render `--count` tracks of `--seconds` at
each sampling setting with seed 1 and judge them with `soundalike stats --reference DATA` (the same
`render_and_measure` as `tools/bench_fidelity.py`, which caches each row under --out, so a second call only
measures the new checkpoints). Prints one JSON object: per run, per step, the validation NLL the run logged
at that step and the renders' figures; under "data", `--data-draws` sets of train-split excerpts of the same
count and length judged the same way (the spread of each figure for real music: the baseline), and under
"perfect" the same excerpts through the first run's levels (what its representation costs before any model
error).

    python tools/fidelity_curve.py runs-fidelity/ab/plain/runs/demo runs-fidelity/ab/offset/runs/demo \\
        --data data/wesnoth/dataset --out runs-fidelity/ab/curve --sampling 1.0 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fidelity import data_baseline, render_and_measure, representation

from soundalike.checkpoint import load_checkpoint, quantizer_of


def logged_validation(run: Path) -> dict[int, dict]:
    """The run's validation rows by step."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r for r in rows if "val_bits" in r}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sampling", nargs="+", default=["1.0"], help="TEMPERATURE[:MIN_P] settings to render")
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--min-step", type=int, default=0, help="skip checkpoints before this step")
    p.add_argument("--max-step", type=int, default=None, help="skip checkpoints after this step")
    p.add_argument("--data-draws", type=int, default=5,
                   help="sets of --count x --seconds train-split excerpts judged like the renders (the baseline)")
    args = p.parse_args()
    out = args.out.resolve()
    (out / "reports").mkdir(parents=True, exist_ok=True)
    data = args.data.resolve()
    q = quantizer_of(load_checkpoint(max((args.runs[0] / "checkpoints").glob("step-*.pt"))))
    result = {"data": data_baseline(data, out, args.count, args.seconds, args.data_draws),
              "perfect": {"representation": representation(q),
                          **data_baseline(data, out, args.count, args.seconds, args.data_draws, q)}}
    for key in ("data", "perfect"):
        print(json.dumps({key: result[key]["min_median_max"]}), file=sys.stderr)
    for run in args.runs:
        run = run.resolve()
        val = logged_validation(run)
        ckpts = {}
        for path in sorted((run / "checkpoints").glob("step-*.pt")) + [run / "checkpoints" / "latest.pt"]:
            step = load_checkpoint(path)["step"]
            if step >= args.min_step and (args.max_step is None or step <= args.max_step):
                ckpts.setdefault(step, path)
        rows = {}
        for step, path in sorted(ckpts.items()):
            name = f"{run.parent.parent.name}-{step}"
            v = val.get(step, {})
            rows[step] = {"val_bits": v.get("val_bits"), "val_bits16": v.get("val_bits16"),
                          "renders": [render_and_measure(name, path, args.data.resolve(), out, args.count,
                                                         args.seconds, s, args.threads)
                                      for s in args.sampling]}
            print(json.dumps({"run": str(run), "step": step, **rows[step]}), file=sys.stderr)
        result[str(run)] = rows
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
