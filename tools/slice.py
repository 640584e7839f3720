"""Slice a folder of recordings into a training dataset (same as `soundalike slice`)."""

import sys

from soundalike.cli import main

if __name__ == "__main__":
    sys.exit(main(command="slice"))
