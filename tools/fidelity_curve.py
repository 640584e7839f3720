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
    p.add_argument("--markdown", action="store_true", help="print a Markdown table instead of JSON")
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
    print(markdown(result) if args.markdown else json.dumps(result, indent=1))


def _figures(r: dict) -> str:
    verdicts = ", ".join(f"{n} {k}" for k, n in r.get("verdicts", {}).items())
    return (f"{verdicts} | {r['level_together_db']:+.1f} dB | {r['dc_diff']:+.4f} | {r['hiss_db']:+.1f} dB | "
            f"{r['crackle_per_s']:.2f} | {r['frechet']:.0f} |")


def markdown(result: dict) -> str:
    """The curve as a Markdown table, the data's excerpts (min / median / max over the draws) first."""
    lines = [("| step | model | valid bits | sampling | verdicts | level (together) | DC vs data | hiss > 2 kHz | "
             "clicks/s | Fréchet |"), "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key in ("data", "perfect"):
        span = result[key]["min_median_max"]
        label = "data excerpts" if key == "data" else f"data through {result[key]['representation']}"
        ok = sum(r.get("verdicts", {}).get("ok", 0) for r in result[key]["draws"])
        cells = " | ".join(f"{span[k][0]:{f}}..{span[k][2]:{f}}{unit}" if k in span else "-" for k, f, unit in (
            ("level_together_db", "+.1f", " dB"), ("dc_diff", "+.4f", ""), ("hiss_db", "+.1f", " dB"),
            ("crackle_per_s", ".2f", ""), ("frechet", ".0f", "")))
        lines.append(f"| – | {label} ({len(result[key]['draws'])} draws) | – | – | "
                     f"{ok} of {result[key]['count'] * len(result[key]['draws'])} ok | {cells} |")
    for run, rows in result.items():
        if run in ("data", "perfect"):
            continue
        for step, row in rows.items():
            bits = f"{row['val_bits']:.3f}" if row["val_bits"] else "–"
            for r in row["renders"]:
                temperature, _, min_p = r["setting"].partition(":")
                sampling = f"T {temperature}" + (f", min-p {min_p}" if min_p else "")
                lines.append(f"| {step:,} | {Path(run).parent.parent.name} | {bits} | {sampling} | {_figures(r)}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
