#!/usr/bin/env bash
# Make .venv (once) and install l2l into it; with "dev", the test dependencies too.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "l2l needs Python 3.11 or newer ($python is $("$python" --version 2>&1))" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
extra=""
[ "${1:-}" = "dev" ] && extra="[dev]"
.venv/bin/python -m pip install --quiet --upgrade pip
echo "installing l2l$extra into .venv (TensorFlow takes a minute or two the first time)..."
# setuptools warns, as a boxed BuildBackendWarning (a UserWarning), on every editable install in
# every mode (lenient: "folders in your working directory"; compat: "transitional"; strict: "do
# not remove build/"): nothing to act on here, so the build's UserWarnings are not shown.
PYTHONWARNINGS=ignore::UserWarning .venv/bin/python -m pip install --quiet --editable ".$extra"
