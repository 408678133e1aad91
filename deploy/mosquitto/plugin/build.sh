#!/bin/sh
# Build the kycedge_guard Mosquitto plugin: build.sh OUT.so
# Needs gcc and the Debian packages mosquitto-dev and libssl-dev (run.sh installs them).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT.so}
${CC:-gcc} -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -Werror -fPIC -shared \
    -o "$out" "$here/kycedge_guard.c" -lcrypto
