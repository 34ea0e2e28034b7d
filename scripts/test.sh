#!/usr/bin/env bash
# The project's one test command: formatting, lints, then every unit and
# integration test against the release binary on the real kernel.
#
# The integration tests need root (cgroups, namespaces, landlock, seccomp).
# As root they all run and a missing kernel feature fails them loudly; a
# developer without root may set AGENT_EXEC_SKIP_PRIVILEGED=1 to skip them.
set -euo pipefail
cd "$(dirname "$0")/.."

# The MCP tests drive `agent-exec mcp` with a real client from another
# ecosystem: the Python MCP SDK from PyPI, in a virtual environment of ours.
# The rootless tests put a stand-in for a user's systemd on a real D-Bus
# bus with dbus-fast.
venv=target/test-venv
if ! "$venv/bin/python" -c 'import mcp, dbus_fast' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        'mcp>=1.20,<2' 'dbus-fast>=2,<3'
fi

cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release --no-fail-fast "$@"
