"""``python -m kycedge.carrier.cli``: the same as the console script."""

import sys

from kycedge.carrier.cli import main

sys.exit(main())
