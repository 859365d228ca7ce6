#!/usr/bin/env bash
# The test command: installs what the suite needs (Debian 12, as root), builds
# the release and the ASan+UBSan trees, runs every test with ctest, then runs
# each fuzz target for a bounded time.
#   FTPW_SKIP_APT=1     do not call apt-get
#   FTPW_SKIP_ASAN=1    skip the sanitizer build and run
#   FTPW_SKIP_FUZZ=1    skip the fuzzers
#   FTPW_FUZZ_SECONDS=N seconds per fuzz target (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=${JOBS:-$(nproc)}

if [ -z "${FTPW_SKIP_APT:-}" ]; then
  bash deploy/install-deps.sh
fi

echo "== release build"
cmake --preset release >/dev/null
cmake --build --preset release -j "$JOBS"
echo "== tests (release)"
ctest --test-dir build/release --output-on-failure -j "$JOBS"

if [ -z "${FTPW_SKIP_ASAN:-}" ]; then
  echo "== ASan+UBSan build"
  cmake --preset asan-ubsan >/dev/null
  cmake --build --preset asan-ubsan -j "$JOBS"
  echo "== tests (ASan+UBSan)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build/asan --output-on-failure -j "$JOBS"
fi

if [ -z "${FTPW_SKIP_FUZZ:-}" ] && command -v clang++ >/dev/null; then
  echo "== fuzz (${FTPW_FUZZ_SECONDS:-20} s per target)"
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz -j "$JOBS"
  for t in build/fuzz/tests/fuzz_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    corpus="$ROOT/tests/fuzz/corpus/${name#fuzz_}"
    work=$(mktemp -d)
    [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/
    echo "-- $name"
    "$t" -max_total_time="${FTPW_FUZZ_SECONDS:-20}" -print_final_stats=0 "$work" 2>&1 | tail -n 2
    rm -rf "$work"
  done
fi
echo "== all tests passed"
