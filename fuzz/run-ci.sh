#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and fails on any crash, leak,
# timeout or out-of-memory. Called by CI (.ci/run); usable by hand:
#
#   fuzz/run-ci.sh                       # all targets, 60 s each
#   FUZZ_SECONDS=10 fuzz/run-ci.sh flow_handlers
#   FUZZ_KEEP_CORPUS=/tmp/grown fuzz/run-ci.sh   # keep what the fuzzer found
#
# The committed corpus (corpus/<target>/) is never written: each target is
# fuzzed on a scratch copy, deleted afterwards (also when the run is
# interrupted), so a CI run leaves the work tree as it found it. With
# FUZZ_KEEP_CORPUS=<dir>, each target's grown corpus is copied to
# <dir>/<target>/ for minimising and committing by hand (README.md).
#
# Works on the stable toolchain: cargo-fuzz needs `-Zsanitizer=address`,
# which RUSTC_BOOTSTRAP=1 unlocks. It must be set for *every* cargo fuzz
# invocation: cargo caches rustc's target-info probe in
# fuzz/target/.rustc_info.json without RUSTC_BOOTSTRAP in the cache key, so
# one run without it poisons later runs with it (and the reverse). The cache
# is deleted first for the same reason.
set -euo pipefail
keep="${FUZZ_KEEP_CORPUS:-}"
if [ -n "$keep" ]; then
    keep="$(realpath -m "$keep")"
fi
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never
SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
CARGO_FUZZ_VERSION=0.13.2

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install "cargo-fuzz@$CARGO_FUZZ_VERSION" --locked
fi

rm -f target/.rustc_info.json

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

echo "==> building ${targets[*]}"
cargo fuzz build

# Scratch corpora and logs, removed on exit; a failing target's log is
# kept (its path is printed).
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

failed=()
for t in "${targets[@]}"; do
    echo "==> fuzzing $t for ${SECONDS_PER_TARGET}s"
    # Run on a scratch copy of the committed seeds: inputs the fuzzer finds
    # are not committed (minimise and add them by hand, see README.md).
    work="$scratch/$t"
    mkdir -p "$work"
    if [ -d "corpus/$t" ]; then
        cp -r "corpus/$t/." "$work/"
    fi
    set +e
    cargo fuzz run "$t" "$work" -- -max_total_time="$SECONDS_PER_TARGET" -timeout=30 -rss_limit_mb=4096 \
        -print_final_stats=1 2>&1 | tee "$work.log" | grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^Done|panicked|invariant|ERROR|SUMMARY'
    rc="${PIPESTATUS[0]}"
    set -e
    if [ -n "$keep" ]; then
        mkdir -p "$keep/$t"
        cp -r "$work/." "$keep/$t/"
        echo "==> $t: grown corpus kept in $keep/$t"
    fi
    if [ "$rc" -ne 0 ]; then
        log="$(mktemp --suffix=".$t.log")"
        cp "$work.log" "$log"
        echo "!!!!!!!! $t FAILED: crash input in fuzz/artifacts/$t/ (log: $log)"
        failed+=("$t")
    fi
    rm -rf "$work" "$work.log"
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "==> fuzzing found crashes in: ${failed[*]}"
    exit 1
fi
echo "==> fuzzing: no crash in ${targets[*]}"
