#!/usr/bin/env bash
# Installs everything weightlab needs on a Debian or Ubuntu machine (idempotent): Debian's
# Fashion-MNIST, the Jargon File, graphviz, a single-node SLURM (slurm-wlm, munge: tests/test_slurm.py
# starts it) and Chromium (tests/test_report.py opens the HTML report in it, headless), then the pinned
# Python packages and weightlab itself.
#
# Where the Python packages go (nothing is ever installed into the system Python):
#   - an environment you activated (a venv, a conda env): into it;
#   - otherwise a Python of your own on PATH (pyenv, a source build): into it;
#   - otherwise (a stock Debian/Ubuntu, whose /usr/bin/python3 is the system's and, from Debian 12
#     and Ubuntu 23.04 on, marked externally managed): into the project's virtual environment
#     .venv, created here. `. ./env.sh` enters it (and does nothing in the two cases above).
# `./setup.sh --which-python` prints the interpreter it would install into and exits (tests/test_setup.py).
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
APT_PACKAGES="chromium dataset-fashion-mnist graphviz jargon-text munge slurm-wlm"
missing=""
for package in $APT_PACKAGES; do
    dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
done

# Which Python: see the header. A Python is "the system's" when it lives under /usr and is not a venv.
python_kind() {  # prints env | own | system for the interpreter $1
    "$1" - <<'PY'
import os, sys
if sys.prefix != sys.base_prefix or os.environ.get("CONDA_PREFIX"):
    print("env")
elif os.path.realpath(sys.base_prefix).startswith("/usr"):
    print("system")
else:
    print("own")
PY
}
HOST_PYTHON=$(command -v python3 || command -v python || true)
if [ -z "$HOST_PYTHON" ]; then
    echo "setup: no python3 on PATH; install it (apt-get install python3 python3-venv) and run ./setup.sh again" >&2
    exit 1
fi
if ! "$HOST_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup: $HOST_PYTHON is Python $("$HOST_PYTHON" -c 'import sys; print(sys.version.split()[0])'); weightlab needs 3.11 or newer" >&2
    exit 1
fi
KIND=$(python_kind "$HOST_PYTHON")
if [ "$KIND" = "system" ] || { [ "$KIND" != "env" ] && [ -x .venv/bin/python ]; }; then
    if [ ! -x .venv/bin/python ]; then
        # Debian and Ubuntu ship venv's pip bootstrap separately (python3-venv / python3.X-venv).
        "$HOST_PYTHON" -c 'import ensurepip' 2>/dev/null \
            || missing="$missing python3-venv python$("$HOST_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv"
    fi
    PYTHON=.venv/bin/python
else
    PYTHON="$HOST_PYTHON"
fi

if [ "${1:-}" = "--which-python" ]; then
    echo "$PYTHON"
    exit 0
fi
if [ -n "$missing" ]; then
    echo "setup: apt-get install$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
if [ "$PYTHON" = ".venv/bin/python" ] && [ ! -x .venv/bin/python ]; then
    echo "setup: $HOST_PYTHON is the system's Python; creating the project's virtual environment .venv"
    "$HOST_PYTHON" -m venv .venv
fi
echo "setup: installing into $("$PYTHON" -c 'import sys; print(sys.prefix)') (Python $("$PYTHON" -c 'import sys; print(sys.version.split()[0])'))"

PIP="$PYTHON -m pip install --quiet --disable-pip-version-check --root-user-action=ignore"
TORCH=$(grep -E '^torch==' requirements.txt)
echo "setup: pip install ($TORCH first, so nothing pulls a CUDA build)"
$PIP "$TORCH"
$PIP -r requirements.txt
[ -f requirements-nodeps.txt ] && $PIP --no-deps -r requirements-nodeps.txt
$PIP --no-deps -e .
if [ "$PYTHON" = ".venv/bin/python" ] && [ -z "${VIRTUAL_ENV:-}" ]; then
    echo "setup: done; enter the environment with: . ./env.sh"
else
    echo "setup: done"
fi
