"""`python -m soundalike`: the same as the `soundalike` console script."""

import sys

from .cli import main

sys.exit(main())
