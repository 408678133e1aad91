#!/usr/bin/env bash
# Regenerate the hash-pinned lock files in locks/ from pyproject.toml with uv (from PyPI:
# `.venv/bin/pip install uv`). One lock per product and target, resolved for that target's
# platform and Python (binary wheels only, except the dev lock):
#   locks/unit-aarch64-cp311.txt     the unit on Raspberry Pi OS Bookworm (CPython 3.11, glibc 2.36)
#   locks/unit-aarch64-cp310.txt     the unit on JetPack 6 (CPython 3.10, glibc 2.35)
#   locks/unit-x86_64-cp311.txt      the unit on x86-64 Debian 12 (this build machine, the .deb test)
#   locks/carrier-x86_64-cp311.txt   the carrier receiver (extra carrier: psycopg)
#   locks/dev-x86_64-cp311.txt       tests and linters (extras dev, carrier, fleet): what run.sh and CI install
# Install one with hash checking:
#   pip install --require-hashes --only-binary=:all: -r locks/unit-aarch64-cp311.txt
#   pip install --no-deps --no-build-isolation .      (or the kycedge wheel)
# tests/test_locks.py checks that the aarch64 locks resolve to binary wheels for their targets.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-$(command -v uv || echo .venv/bin/uv)}
compile() {  # OUT PLATFORM PYTHON [uv args]
    local out=$1 platform=$2 python=$3; shift 3
    "$UV" pip compile pyproject.toml --python-platform "$platform" --python-version "$python" \
        --generate-hashes --constraint locks/constraints.txt \
        --custom-compile-command "tools/lock.sh" --quiet "$@" -o "$out"
}
# products: binary wheels only; dev: tpm2-pytss has no wheels (built against libtss2-dev)
compile locks/unit-aarch64-cp311.txt aarch64-manylinux_2_36 3.11 --only-binary :all:
compile locks/unit-aarch64-cp310.txt aarch64-manylinux_2_35 3.10 --only-binary :all:
compile locks/unit-x86_64-cp311.txt x86_64-manylinux_2_36 3.11 --only-binary :all:
compile locks/carrier-x86_64-cp311.txt x86_64-manylinux_2_36 3.11 --only-binary :all: --extra carrier
compile locks/dev-x86_64-cp311.txt x86_64-manylinux_2_36 3.11 --extra dev --extra carrier --extra fleet
for f in locks/*-*.txt; do echo "$f: $(grep -c '==' "$f") pins"; done
