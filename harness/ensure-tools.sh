#!/bin/sh
# Makes sure `make test` can run: a Python that imports pytest, and CTest.
# Prints the Python to use on stdout. As root it installs what is missing (Debian/Ubuntu);
# otherwise it prints the exact command to run and fails.
set -eu

find_python() {
    for p in ${1:-} python3 /usr/bin/python3; do
        if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import pytest' >/dev/null 2>&1; then
            command -v "$p"
            return 0
        fi
    done
    return 1
}

missing=""
find_python "${1:-}" >/dev/null || missing="$missing python3-pytest"
command -v ctest >/dev/null 2>&1 || missing="$missing cmake"

if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "make test: installing$missing" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >&2 && apt-get install -y -q $missing >&2
    else
        echo "make test needs:$missing" >&2
        echo "run:  sudo apt-get install -y$missing" >&2
        exit 1
    fi
fi
find_python "${1:-}"
