#!/usr/bin/env bash
# Builds the binary to install: target/dist/agent-exec (the `dist` profile:
# the release profile with whole-program optimisation, see Cargo.toml).
#
# On x86_64/aarch64 glibc Linux it is linked statically (static-pie: ASLR is
# kept). Every agent-exec command is a fresh process, and on the machines we
# measured a dynamically linked binary spends ~0.3-0.5 ms per command in the
# dynamic loader, its relocations and the page faults they cause (perf stat
# page-faults: 155 dynamic vs 123 static-pie for `agent-exec --version`).
# glibc's static caveats do not apply: agent-exec uses no NSS lookups
# (getpwnam & co) and no dlopen.
#
# On x86_64 the linker (rust-lld, the default there since Rust 1.90) also
# places the functions of scripts/hot-functions.txt first, together: the
# code a command runs then sits in a few fault-around windows instead of
# dozens (see that script). AGENT_EXEC_NO_HOT_LIST=1 builds without it, for
# a linker other than lld.
#
# Last, the binary is written once more, with write(): rust-lld writes its
# output through a shared mapping, which leaves it in the page cache as
# 4 KiB pages, while a file written with write() (as `install`, `cp` and
# package managers write it) is cached in large folios, and every command
# then maps its code and data in fewer, cheaper faults. Same bytes, 0.2 ms
# less per command on the machines we measured (see the README).
#
# `cargo build --release` still works and gives a dynamically linked binary
# without cross-crate optimisation (target/release) that behaves the same;
# the flags cannot live in .cargo/config.toml because they would also apply
# to the proc-macro crates, which must stay dynamic.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
host="$(rustc -vV | sed -n 's/^host: //p')"
hot="$PWD/scripts/hot-functions.txt"
out="${CARGO_TARGET_DIR:-target}/dist/agent-exec"
flags=(-C target-feature=+crt-static)
if [ "$host" = x86_64-unknown-linux-gnu ] && [ -s "$hot" ] && [ -z "${AGENT_EXEC_NO_HOT_LIST:-}" ]; then
    flags+=(-C "link-arg=-Wl,--symbol-ordering-file=$hot" -C link-arg=-Wl,--no-warn-symbol-ordering)
else
    hot=""
fi
case "$host" in
    x86_64-unknown-linux-gnu | aarch64-unknown-linux-gnu)
        # `cargo rustc` passes the flags to the final binary only.
        cargo rustc --profile dist --bin agent-exec "$@" -- "${flags[@]}"
        cp "$out" "$out.tmp.$$"
        mv -f "$out.tmp.$$" "$out" ;;
    *)
        exec cargo build --profile dist --bin agent-exec "$@" ;;
esac
if [ -n "$hot" ] && command -v nm >/dev/null; then
    listed="$(wc -l <"$hot")"
    found="$(nm "$out" | awk '{print $NF}' | sort -u | comm -12 - <(sort -u "$hot") | wc -l)"
    echo "build-release: $found of $listed hot functions placed first" >&2
    if [ $((found * 10)) -lt $((listed * 8)) ]; then
        echo "build-release: the list is stale (toolchain or dependencies changed): run scripts/hot-functions.sh" >&2
    fi
fi
