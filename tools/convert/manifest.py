"""models/manifest.json (schema 1): update the `models` section, keep everything else.

The `matching` and `pipeline` sections belong to the vision side and are preserved as
found; so are the entries of models this run did not rebuild. Written with sorted keys
and 2-space indent via a temp file, fsync and os.replace.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

SCHEMA = 1
SET_ID = "kycedge-face-models"
SET_VERSION = "1.0.0"


def load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    if data.get("schema", SCHEMA) != SCHEMA:
        raise ValueError(f"{path}: expected schema {SCHEMA}, got {data.get('schema')!r}")
    return data


def update(path: Path, models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    data = load(path)
    merged = dict(data.get("models", {}))
    merged.update(models)
    data.update({"schema": SCHEMA, "set_id": SET_ID, "set_version": SET_VERSION, "models": merged})
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return data
