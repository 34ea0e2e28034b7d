"""A stand-in for a user's systemd on a real D-Bus bus, for tests/rootless.rs.

It owns org.freedesktop.systemd1 and answers StartTransientUnit the way
systemd does for a scope with Delegate=yes: a cgroup directory for the
unit under PARENT, owned by the user who owns the PIDs (with its
cgroup.procs, cgroup.subtree_control and cgroup.threads), and the PIDs
moved into it. Every call's properties go to LOG as one JSON line.

Usage: fake_systemd.py BUS_ADDRESS PARENT_CGROUP_DIR LOG
Prints "ready" once it owns the name.
"""

import asyncio
import json
import os
import sys

from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, method


class Manager(ServiceInterface):
    def __init__(self, parent, log):
        super().__init__("org.freedesktop.systemd1.Manager")
        self.parent = parent
        self.log = log
        self.jobs = 0

    @method()
    def StartTransientUnit(
        self, name: "s", mode: "s", properties: "a(sv)", aux: "a(sa(sv))"
    ) -> "o":
        props = {key: value.value for key, value in properties}
        with open(self.log, "a") as log:
            log.write(json.dumps({"name": name, "mode": mode, "properties": props}) + "\n")
        if not name.endswith(".scope") or props.get("Delegate") is not True:
            raise ValueError("only delegated scopes here")
        pids = props.get("PIDs", [])
        scope = os.path.join(self.parent, name)
        os.mkdir(scope)
        owner = os.stat(f"/proc/{pids[0]}")
        for entry in ["", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"]:
            path = os.path.join(scope, entry) if entry else scope
            if os.path.exists(path):
                os.chown(path, owner.st_uid, owner.st_gid)
        for pid in pids:
            with open(os.path.join(scope, "cgroup.procs"), "w") as procs:
                procs.write(str(pid))
        self.jobs += 1
        return f"/org/freedesktop/systemd1/job/{self.jobs}"


async def main():
    address, parent, log = sys.argv[1:4]
    bus = await MessageBus(bus_address=address).connect()
    bus.export("/org/freedesktop/systemd1", Manager(parent, log))
    await bus.request_name("org.freedesktop.systemd1")
    print("ready", flush=True)
    await bus.wait_for_disconnect()


asyncio.run(main())
