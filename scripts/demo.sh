#!/usr/bin/env bash
# Install l2l, start the service on 127.0.0.1:8000 (SQLite + embedded Ray) and run the demo search.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
exec .venv/bin/l2l demo "$@"
