#!/usr/bin/env bash
# One entry point for a fresh machine.
#   ./run.sh demo           set up (.venv, system packages) and run the whole-flow demo
#   ./run.sh test [ARGS]    set up and run the test suite (ARGS go to pytest)
#   ./run.sh setup          set up only
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}
SYSTEM_PACKAGES=(mosquitto postgresql mosquitto-dev libssl-dev gcc swtpm swtpm-tools tpm2-tools libtss2-dev
                 tpm2-openssl softhsm2 curl chromium chromium-driver
                 python3-venv)

need_system_packages() {
    local missing=()
    command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
    ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
    # the broker's guard plugin (deploy/mosquitto/plugin/build.sh) is compiled from source
    [ -f /usr/include/mosquitto_broker.h ] || missing+=(mosquitto-dev)
    [ -f /usr/include/openssl/x509.h ] || missing+=(libssl-dev)
    command -v gcc >/dev/null 2>&1 || missing+=(gcc)
    # hardware-held keys (issue 11): swtpm + tools for the tpm tests, libtss2-dev to build
    # tpm2-pytss, tpm2-openssl for the TLS provider measurement, SoftHSM2 for the hsm tests
    command -v swtpm >/dev/null 2>&1 || missing+=(swtpm)
    command -v swtpm_setup >/dev/null 2>&1 || missing+=(swtpm-tools)
    command -v tpm2_createprimary >/dev/null 2>&1 || missing+=(tpm2-tools)
    [ -f /usr/include/tss2/tss2_esys.h ] || missing+=(libtss2-dev)
    ls /usr/lib/*/ossl-modules/tpm2.so >/dev/null 2>&1 || missing+=(tpm2-openssl)
    [ -f /usr/lib/softhsm/libsofthsm2.so ] || missing+=(softhsm2)
    # the admin guide's commands (curl) and the Debian package's venv (the system python3's venv)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    [ ! -x /usr/bin/python3 ] || /usr/bin/python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
    # the agent's web app tests (marker browser): headless Chromium driven by selenium
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "run.sh: installing system packages: ${missing[*]}" >&2
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
        "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 || true
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
            || { echo "run.sh: could not install ${missing[*]}; install them (apt-get install ${SYSTEM_PACKAGES[*]}) and retry" >&2; exit 1; }
    fi
}

setup_venv() {
    if [ ! -x .venv/bin/python ]; then
        "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
            || { echo "run.sh: Python >= 3.10 required, $PY is $("$PY" --version 2>&1)" >&2; exit 1; }
        "$PY" -m venv .venv
    fi
    # Reinstall only when pyproject.toml or the lock changed since the last install.
    # Dependencies come from the hash-pinned lock (tools/lock.sh) with hash checking; the
    # package itself is installed on top without dependencies. A machine with no lock for
    # its architecture and Python installs unpinned, and says so.
    local stamp=.venv/.kycedge-installed
    local pyver lock
    pyver=$(.venv/bin/python -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    lock="locks/dev-$(uname -m)-${pyver}.txt"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || { [ -f "$lock" ] && [ "$lock" -nt "$stamp" ]; }; then
        local pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
        if [ -f "$lock" ]; then
            "${pip[@]}" --require-hashes -r "$lock"
            "${pip[@]}" --no-deps -e .
            # a dependency added to pyproject.toml since the lock was made (tests/test_locks.py fails too)
            .venv/bin/python tools/lock_check.py "$lock" || {
                echo "run.sh: $lock is stale (regenerate with tools/lock.sh); installing the rest unpinned" >&2
                "${pip[@]}" -e '.[dev]'
            }
        else
            echo "run.sh: no lock for $(uname -m) $pyver ($lock); installing unpinned" >&2
            "${pip[@]}" -e '.[dev]'
        fi
        touch "$stamp"
    fi
}

cmd=${1:-demo}
shift || true
case "$cmd" in
    setup) need_system_packages; setup_venv ;;
    demo)  need_system_packages; setup_venv; exec .venv/bin/kycedge demo "$@" ;;
    test)  need_system_packages; setup_venv; exec .venv/bin/python -m pytest "$@" ;;
    *) echo "usage: ./run.sh demo | test [pytest args] | setup" >&2; exit 2 ;;
esac
