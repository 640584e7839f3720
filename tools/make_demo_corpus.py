"""Write the bundled synthetic demo corpus: the same as `soundalike demo-corpus`."""

import sys

from soundalike.cli import main

if __name__ == "__main__":
    sys.exit(main(command="demo-corpus"))
