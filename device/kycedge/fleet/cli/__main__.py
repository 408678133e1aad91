"""``python -m kycedge.fleet.cli``: the same as the console script."""

import sys

from kycedge.fleet.cli import main

sys.exit(main())
