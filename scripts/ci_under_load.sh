#!/usr/bin/env bash
# CI beside busy loops, as the README's "under load" figure was taken: a fresh clone of HEAD runs
# `CI=true bash .ci/run` while N shell loops (default 4) keep the cores busy. Prints the exit code,
# the minutes it took and the highest one-minute load average seen. Usage: scripts/ci_under_load.sh [N]
set -uo pipefail
loops=${1:-4}
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
git clone -q "$repo" "$work/l2l"
ln -s "$repo/../shared" "$work/shared"  # CI clones main with ../shared beside it
for _ in $(seq "$loops"); do (while :; do :; done) & done
(while :; do cut -d' ' -f1 /proc/loadavg >> "$work/load"; sleep 30; done) &
start=$(date +%s)
(cd "$work/l2l" && CI=true bash .ci/run < /dev/null > "$work/ci.log" 2>&1)
rc=$?
tail -3 "$work/ci.log"
minutes=$(awk -v s="$(( $(date +%s) - start ))" 'BEGIN { printf "%.1f", s / 60 }')
echo "rc=$rc minutes=$minutes peak_load=$(sort -n "$work/load" | tail -1)"
exit $rc
