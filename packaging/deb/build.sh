#!/usr/bin/env bash
# Build the unit's Debian package ON THE TARGET (or a machine of the same architecture,
# distribution and Python): the venv carries native wheels (LiteRT, numpy, cryptography)
# for the machine it is built on.
#   packaging/deb/build.sh [OUT_DIR]        -> OUT_DIR/kycedge_<version>_<arch>.deb (default dist/)
# Contents:
#   /opt/kycedge/.venv          venv of /usr/bin/python3 with system site packages (python3-picamera2
#                               from apt stays visible), dependencies from locks/unit-<machine>-cp<XY>.txt
#                               installed with hash checking, then the kycedge wheel without deps
#   /opt/kycedge/models         the shipped model set; /opt/kycedge/docs the operator docs
#   /lib/systemd/system/        kycedge.service
#   /etc/kycedge/kycedge.toml.example   the example unit config (copy to kycedge.toml)
#   maintainer scripts          user and group kycedge (+ video), /var/lib/kycedge 0700,
#                               /etc/kycedge root:kycedge 0750; purge removes the state
#                               directory and its keys unless /var/lib/kycedge/.keep-on-purge exists
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=$(realpath -m "${1:-dist}")
PY=${KYCEDGE_DEB_PYTHON:-/usr/bin/python3}
VERSION=$("$PY" -c 'import re,sys; print(re.search(r"^version = \"([^\"]+)\"", open("pyproject.toml").read(), re.M)[1])')
ARCH=$(dpkg --print-architecture)
PYTAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
LOCK="locks/unit-$(uname -m)-${PYTAG}.txt"
[ -f "$LOCK" ] || { echo "build.sh: no lock $LOCK for this machine (tools/lock.sh makes one per target)" >&2; exit 1; }
"$PY" -c 'import ensurepip, venv' 2>/dev/null \
    || { echo "build.sh: $PY has no venv/ensurepip (apt-get install python3-venv)" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/root"
VENV=/opt/kycedge/.venv
mkdir -p "$ROOT/opt/kycedge" "$ROOT/DEBIAN"
"$PY" -m venv --system-site-packages "$ROOT$VENV"
PIP=("$ROOT$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile)
# --ignore-installed: everything pinned goes into the venv even if the build machine's
# system site packages happen to hold the same version (the target's may not).
"${PIP[@]}" --ignore-installed --require-hashes --only-binary=:all: -r "$LOCK"
"$ROOT$VENV/bin/python" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$WORK/wheel" .
"${PIP[@]}" --no-deps "$WORK"/wheel/kycedge-*.whl
"$ROOT$VENV/bin/python" -m pip uninstall --quiet --yes pip setuptools >/dev/null 2>&1 || true
# The venv was made under $ROOT: point its scripts and config at the installed path.
grep -rlI --null "$ROOT" "$ROOT$VENV" | xargs -0 -r sed -i "s#$ROOT##g"
find "$ROOT$VENV" -name '__pycache__' -prune -exec rm -rf {} +

cp -r models "$ROOT/opt/kycedge/models"
cp -r docs "$ROOT/opt/kycedge/docs"
install -D -m 0644 systemd/kycedge.service "$ROOT/lib/systemd/system/kycedge.service"
install -D -m 0644 deploy/examples/unit.toml "$ROOT/etc/kycedge/kycedge.toml.example"
install -D -m 0644 LICENSE "$ROOT/usr/share/doc/kycedge/copyright"

INSTALLED_KB=$(du -sk "$ROOT" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$INSTALLED_KB/" \
    -e "s/@PYVER@/$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')/g" \
    packaging/deb/control.in > "$ROOT/DEBIAN/control"
echo "/etc/kycedge/kycedge.toml.example" > "$ROOT/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "packaging/deb/$s" "$ROOT/DEBIAN/$s"; done

mkdir -p "$OUT"
DEB="$OUT/kycedge_${VERSION}_${ARCH}.deb"
fakeroot dpkg-deb --build -Zgzip -z1 --root-owner-group "$ROOT" "$DEB" >/dev/null 2>&1 \
    || dpkg-deb --build -Zgzip -z1 --root-owner-group "$ROOT" "$DEB" >/dev/null
echo "$DEB"
