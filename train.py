"""python train.py --config configs/beatles.yaml  (same as `soundalike train`)."""

import sys

from soundalike.cli import main

if __name__ == "__main__":
    sys.exit(main(command="train"))
