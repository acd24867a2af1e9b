# Enters the Python environment ./setup.sh installed into. Source it: `. ./env.sh`.
# On a stock Debian/Ubuntu that is the project's .venv; when you had your own environment active
# (a venv, a conda env) or a Python of your own on PATH (pyenv), setup.sh used that, and this
# file changes nothing.
if [ -z "${VIRTUAL_ENV:-}" ] && [ -z "${CONDA_PREFIX:-}" ] && [ -f .venv/bin/activate ]; then
    . .venv/bin/activate
fi
