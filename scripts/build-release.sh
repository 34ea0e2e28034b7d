#!/usr/bin/env bash
# Builds the binary to install, target/dist/agent-exec: the `dist` profile
# (link-time optimisation) and, on glibc x86_64 and aarch64, linked
# statically (static-pie, ASLR kept). Every agent-exec command is a new
# process; docs/performance.md has what the two buy. agent-exec makes no
# NSS lookups and no dlopen, so glibc's caveats about static linking do not
# apply. Elsewhere the binary is built dynamically.
#
# `cargo install --path .` gives the same program, dynamically linked and
# without link-time optimisation.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${CARGO_TARGET_DIR:-target}/dist/agent-exec"
case "$(rustc -vV | sed -n 's/^host: //p')" in
    x86_64-unknown-linux-gnu | aarch64-unknown-linux-gnu)
        # `cargo rustc` hands the flag to the binary only: the proc-macro
        # crates must stay dynamic.
        cargo rustc --profile dist --bin agent-exec "$@" -- -C target-feature=+crt-static
        if readelf -l "$out" | grep -q 'Requesting program interpreter'; then
            echo "build-release: $out is not statically linked" >&2
            exit 1
        fi ;;
    *)
        cargo build --profile dist --bin agent-exec "$@" ;;
esac
echo "build-release: $out" >&2
