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
# `cargo build --release` still works and gives a dynamically linked binary
# without cross-crate optimisation (target/release) that behaves the same;
# the flags cannot live in .cargo/config.toml because they would also apply
# to the proc-macro crates, which must stay dynamic.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
host="$(rustc -vV | sed -n 's/^host: //p')"
case "$host" in
    x86_64-unknown-linux-gnu | aarch64-unknown-linux-gnu)
        # `cargo rustc` passes the flags to the final binary only.
        exec cargo rustc --profile dist --bin agent-exec "$@" -- -C target-feature=+crt-static ;;
    *)
        exec cargo build --profile dist --bin agent-exec "$@" ;;
esac
