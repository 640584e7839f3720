"""The `soundalike` console script: one subcommand per tool, each implemented in the module named after it.

Every subcommand module exposes `add_arguments(parser)` and `run(args) -> int | None`. A `UserError`
raised anywhere, and a bad flag, become one line on stderr and exit status 2; an error the system reports
(a full disk, a refused permission) one line and exit status 1; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import UserError

# subcommand -> (module, one-line help)
COMMANDS = {
    "demo-corpus": ("soundalike.demo_corpus", "write the bundled synthetic demo artist as 44.1 kHz stereo files"),
    "slice": ("soundalike.slicing", "slice a folder of recordings into a training dataset"),
    "train": ("soundalike.train", "train a model from a YAML config (resumes a killed run)"),
    "evaluate": ("soundalike.evaluate", "NLL in bits per sample of a checkpoint on a dataset split"),
    "render": ("soundalike.render", "generate audio from a checkpoint"),
    "stats": ("soundalike.stats", "audio statistics and a noise / silence verdict for clips"),
    "gallery": ("soundalike.gallery", "write an HTML page of a run's samples, renders and curves"),
    "keep": ("soundalike.keep", "mark checkpoints you like as favourites, which training never prunes"),
    "export": ("soundalike.export", "write a model as a shareable folder: safetensors weights, config, model card"),
    "radio": ("soundalike.radio", "broadcast endless new music from a checkpoint to browsers (and Icecast)"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (argparse's default prints the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _module(name: str):
    return importlib.import_module(COMMANDS[name][0])


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="soundalike",
        description="Slice an artist's recordings, train a sample-level model on them, render new music.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        # Only the chosen subcommand's module is imported (torch is slow to import).
        if name == only:
            _module(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None, command: str | None = None) -> int:
    """Run a subcommand. `command` fixes the subcommand (for the thin root scripts train.py / render.py)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if command is not None:
        argv = [command, *argv]
    only = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(_module(args.command).run(args) or 0)
    except UserError as e:
        print(f"soundalike {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"soundalike {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the disk or the system refused (full, permissions): not a bug to show a traceback for
        where = f" ({e.filename})" if e.filename else ""
        print(f"soundalike {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
