"""python render.py --seconds 60  (same as `soundalike render`)."""

import sys

from soundalike.cli import main

if __name__ == "__main__":
    sys.exit(main(command="render"))
