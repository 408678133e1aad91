"""``python -m kycedge.unit.cli``: the same as the console script."""

import sys

from kycedge.unit.cli import main

sys.exit(main())
