#!/usr/bin/env bash
# Regenerates scripts/hot-functions.txt: every function that agent-exec's
# common commands execute (a permissive and a default `run`, a `--no-wait`
# run, `status`, `wait`, `logs`, `list`), as callgrind sees them in the
# binary that scripts/build-release.sh builds.
#
# Why: every command is a fresh process, and on a VM a page fault is dear.
# Left to itself the linker scatters the ~600 functions a launch runs over
# the 3.6 MiB of code, and the CLI took 33 faults on its code per launch;
# placed first, together, they take 11 (perf record -e page-faults -d, 33
# permissive launches). build-release.sh hands this list to the linker.
#
# The names are mangled, with the hashes of this toolchain and these
# dependencies: after a toolchain or Cargo.lock update build-release.sh
# reports how few of them it still found; then run this again (it needs
# valgrind: apt-get install valgrind). A stale list costs speed, never
# correctness.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v valgrind >/dev/null ||
    { echo "hot-functions: needs valgrind (apt-get install valgrind)" >&2; exit 1; }

scripts/build-release.sh
BIN="$PWD/target/dist/agent-exec"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
STORE="$WORK/store"

# Under valgrind clone3 fails, so the supervisor is forked, and Landlock is
# unknown, so the default policy stops at its layers: still the same code
# up to there. The jobs themselves are not profiled.
profiled() {
    valgrind --tool=callgrind --demangle=no --trace-children=yes \
        --trace-children-skip='/bin/*,/usr/bin/*' \
        --callgrind-out-file="$WORK/callgrind.%p" -q \
        "$BIN" --root "$STORE" "$@" >/dev/null 2>&1 || true
}
profiled run --forever --policy permissive -- /bin/true
profiled run --forever -- /bin/true
id="$("$BIN" --root "$STORE" run --no-wait -- sleep 0.5 |
    perl -MJSON::PP -0777 -ne 'print decode_json($_)->{job_id}')"
profiled status "$id"
profiled wait "$id"
profiled logs "$id"
profiled list
profiled run --no-wait -- /bin/true
sleep 2 # the last supervisor, in the background

# Functions in the order the processes met them (the CLI's first), each once.
perl -ne 'print "$1\n" if /^c?fn=\(\d+\) ([_A-Za-z.\$]\S*)$/' \
    $(ls "$WORK"/callgrind.* | sort -t. -k2 -n) |
    awk '!seen[$0]++' >scripts/hot-functions.txt
echo "hot-functions: $(wc -l <scripts/hot-functions.txt) functions in scripts/hot-functions.txt" >&2
