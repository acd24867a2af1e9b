#!/usr/bin/env bash
# Installs everything weightlab needs on a Debian machine with Python 3.11 (idempotent):
# Debian's Fashion-MNIST, the Jargon File, graphviz, a single-node SLURM (slurm-wlm, munge: tests/test_slurm.py
# starts it) and Chromium (tests/test_report.py opens the HTML report in it, headless), then the pinned
# Python packages and weightlab itself.
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
APT_PACKAGES="chromium dataset-fashion-mnist graphviz jargon-text munge slurm-wlm"
missing=""
for package in $APT_PACKAGES; do
    dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
done
if [ -n "$missing" ]; then
    echo "setup: apt-get install$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

PIP="python -m pip install --quiet --disable-pip-version-check --root-user-action=ignore"
TORCH=$(grep -E '^torch==' requirements.txt)
echo "setup: pip install ($TORCH first, so nothing pulls a CUDA build)"
$PIP "$TORCH"
$PIP -r requirements.txt
[ -f requirements-nodeps.txt ] && $PIP --no-deps -r requirements-nodeps.txt
$PIP --no-deps -e .
echo "setup: done"
