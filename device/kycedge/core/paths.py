"""Where the package finds the data it ships: models, sample faces, the broker template.

The files travel with the package (``kycedge/data/`` in the wheel; in a source checkout
those entries are links to ``models/``, ``fixtures/faces/`` and ``deploy/mosquitto/``), so
an installed unit, receiver or fleet tool never reads the checkout's layout. An operator
can point at another copy:

===============  =========================  ======================================
data             environment override       contents
===============  =========================  ======================================
``models``       ``$KYCEDGE_MODELS``        the shipped ``.tflite`` files + manifest
``faces``        ``$KYCEDGE_FACES``         public-domain sample faces (demo, self-test)
``mosquitto``    ``$KYCEDGE_BROKER_CONF``   ``mosquitto.conf`` + ``acl`` templates
===============  =========================  ======================================

``$KYCEDGE_DATA_DIR`` replaces the whole directory (one sub-directory per entry).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Final, Literal

__all__ = ["DATA_ENTRIES", "data_dir"]

Entry = Literal["models", "faces", "mosquitto"]
DATA_ENTRIES: Final[dict[str, str]] = {
    "models": "KYCEDGE_MODELS",
    "faces": "KYCEDGE_FACES",
    "mosquitto": "KYCEDGE_BROKER_CONF",
}


def data_dir(entry: Entry) -> Path:
    """The directory of one data entry (it need not exist: callers report what is missing)."""
    env = os.environ.get(DATA_ENTRIES[entry])
    if env:
        return Path(env)
    base = os.environ.get("KYCEDGE_DATA_DIR")
    if base:
        return Path(base) / entry
    return Path(str(resources.files("kycedge"))) / "data" / entry
