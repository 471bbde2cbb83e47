#!/usr/bin/env bash
# Install l2l with its test dependencies and run every test (SQLite, and PostgreSQL where one answers),
# with pytest-xdist on one worker more than there are cores (L2L_TEST_WORKERS=4 to choose, 0 to run in
# one process): a few tests mostly wait (a 30 s database outage, time limits running out), and the
# extra worker keeps the cores busy meanwhile (2 cores: 7.5 min against 8.0 with two workers).
set -euo pipefail
cd "$(dirname "$0")/.."

# The web pages are tested in a real headless Chromium: Debian's chromium and its chromedriver.
# Installed only where missing, and beside the pip install rather than after it (both mostly wait).
apt_pid=""
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium and chromium-driver for the browser tests (beside the pip install)..."
    (
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
        || echo "WARNING: apt-get could not install chromium; the browser tests will be skipped." >&2
    ) &
    apt_pid=$!
  else
    echo "WARNING: no /usr/bin/chromium or /usr/bin/chromedriver, and apt-get needs root here;" \
      "the browser tests will be skipped (apt-get install chromium chromium-driver)." >&2
  fi
fi
./scripts/install.sh dev
if [ -n "$apt_pid" ]; then
  wait "$apt_pid" || true
fi

# The store's contract tests also run on PostgreSQL: start the local server if it is down.
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if command -v pg_isready >/dev/null && ! pg_up && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
  for _ in $(seq 20); do pg_up && break; sleep 0.5; done
fi
if [ -z "${L2L_TEST_POSTGRES_URL:-}" ] && ! { command -v pg_isready >/dev/null && pg_up; }; then
  echo "WARNING: no PostgreSQL server answers on 127.0.0.1:5432; running the SQLite tests only." >&2
fi

# Tests share nothing but what xdist_group marks (a Ray cluster): every test makes its own
# databases, folders and ports, so they spread over the workers; a group stays on one worker.
workers=${L2L_TEST_WORKERS:-$(($(nproc) + 1))}
status=0
.venv/bin/python -m pytest -q -rfEs --durations=15 -n "$workers" --dist loadgroup "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
