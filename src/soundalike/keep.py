"""`soundalike keep RUN STEP...`: mark the checkpoints of preview steps as favourites, which training never
prunes (neither the step's snapshot, `train.keep_snapshots`, nor its numbered checkpoint, `train.keep_last`).

The marks live in runs/<name>/favourites.json ({"steps": [...]}), which training reads before each pruning
and the gallery shows; a static page cannot write a file, so listening happens in the gallery and marking
here. `keep RUN` lists the favourites; `--undo` removes marks.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .atomic import write_json
from .errors import UserError
from .run_folder import RunFolder, hour_command, numbered, step_of, weights_of


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN", help="a run folder, runs/<name>")
    p.add_argument("steps", nargs="*", type=int, metavar="STEP",
                   help="training steps whose preview clips you like (the gallery's 'Step N'); none: list them")
    p.add_argument("--undo", action="store_true", help="remove the marks (training may then prune those files)")


def _check_file(run: RunFolder) -> None:
    """favourites.json may be replaced only if it is absent or one this command wrote."""
    if not run.favourites.exists():
        return
    try:
        ours = isinstance(json.loads(run.favourites.read_text(encoding="utf-8")).get("steps"), list)
    except (OSError, ValueError, AttributeError, UnicodeDecodeError):
        ours = False
    if not ours:
        raise UserError(f"{run.favourites}: is not a favourites file of `soundalike keep`; it was left as it is")


def run(args: argparse.Namespace) -> int:
    run = RunFolder(Path(args.run_dir))
    if not run.path.is_dir() or not run.looks_like_a_run():
        raise UserError(f"{run.path}: not a run folder (no config.yaml, metrics.jsonl or checkpoints/)")
    bad = [s for s in args.steps if s < 0]
    if bad:
        raise UserError(f"STEP must not be negative, got {bad[0]}")
    _check_file(run)
    favourites = run.favourite_steps()
    if not args.steps:
        for step in sorted(favourites):
            print(f"step {step}: {weights_of(run, step) or 'its weights are missing'}")
        if not favourites:
            print(f"{run.path}: no favourites yet; mark one with `soundalike keep {run.path} STEP`")
        return 0
    if args.undo:
        write_json(run.favourites, {"steps": sorted(favourites - set(args.steps))})
        print(f"{run.path}: {len(favourites & set(args.steps))} mark(s) removed; training may prune those files now")
        return 0
    missing = [s for s in args.steps if weights_of(run, s) is None]
    if missing:
        have = sorted({step_of(p) for p in run.numbered_snapshots() + run.numbered_checkpoints()})
        raise UserError(f"step {missing[0]}: {run.path} holds no snapshot or numbered checkpoint of it (pruned, or "
                        f"not a preview step); steps with weights: {', '.join(map(str, have)) or 'none'}")
    write_json(run.favourites, {"steps": sorted(favourites | set(args.steps))})
    for step in args.steps:
        # Training may have pruned the file between the check above and the write: say so.
        if weights_of(run, step) is None:
            raise UserError(f"step {step}: its weights were pruned while it was being marked")
        kept = [p for p in (run.snapshot(step), run.checkpoint(numbered(step))) if p.is_file()]
        print(f"step {step}: kept {', '.join(map(str, kept))}\n  render an hour: {hour_command(run, step)}")
    return 0
