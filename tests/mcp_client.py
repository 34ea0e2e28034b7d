"""A real MCP client (the Python `mcp` SDK from PyPI) driving `agent-exec mcp`.

Usage: mcp_client.py SCENARIO AGENT_EXEC_BINARY STORE_ROOT WORKDIR

Prints one JSON object: what each step answered, for the Rust test to judge.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def structured(result):
    return {"is_error": bool(result.isError), "json": result.structuredContent}


async def round_trip(session, workdir):
    out = {}
    init = out["tools"] = sorted(t.name for t in (await session.list_tools()).tools)
    del init
    ran = await session.call_tool(
        "run",
        {"command": ["sh", "-c", "echo hello from mcp; echo oops >&2; exit 3"], "cwd": workdir},
    )
    out["run"] = structured(ran)
    job = ran.structuredContent["job_id"]
    out["status"] = structured(await session.call_tool("status", {"job_id": job}))
    out["tail"] = structured(await session.call_tool("tail", {"job_id": job, "lines": 5}))
    slow = await session.call_tool(
        "run",
        {"command": ["sleep", "30"], "cwd": workdir, "no_wait": True, "tags": ["mcp.slow"]},
    )
    out["slow"] = structured(slow)
    slow_id = slow.structuredContent["job_id"]
    out["wait_capped"] = structured(await session.call_tool("wait", {"job_id": slow_id, "until": 30}))
    out["kill"] = structured(await session.call_tool("kill", {"job_id": slow_id, "grace": 0}))
    out["list"] = structured(await session.call_tool("list", {"tags": ["mcp.*"]}))
    out["env"] = structured(
        await session.call_tool(
            "run",
            {
                "command": ["sh", "-c", 'printf "%s literal-xyz-secret" "$SECRET_TOKEN"'],
                "cwd": workdir,
                "env": {"SECRET_TOKEN": "hunter2-from-mcp"},
                "mask": ["SECRET_TOKEN", "literal-xyz-secret"],
            },
        )
    )
    out["stdin"] = structured(
        await session.call_tool("run", {"command": ["cat"], "cwd": workdir, "stdin": "fed through stdin"})
    )
    out["bad_arguments"] = structured(await session.call_tool("run", {"command": ["true"], "bogus": 1}))
    out["missing_job"] = structured(await session.call_tool("status", {"job_id": "0123456789abcdef"}))
    out["validate"] = structured(
        await session.call_tool("pipeline_validate", {"yaml": "phases:\n  - name: [oops\n"})
    )
    out["no_file_read"] = structured(
        await session.call_tool("pipeline_validate", {"file": "/etc/shadow"})
    )
    quoted = "'single'"
    out["env_exact"] = structured(
        await session.call_tool(
            "run",
            {
                "command": ["sh", "-c", 'printf "%s|%s|%s" "$A" "$B" "$C"'],
                "cwd": workdir,
                "env": {"A": quoted, "B": '"double"', "C": " spaced "},
            },
        )
    )
    return out


async def leave_running(session, workdir):
    ran = await session.call_tool(
        "run", {"command": ["sleep", "30"], "cwd": workdir, "until": 0.2}
    )
    return {"run": structured(ran)}


async def main():
    scenario, binary, root, workdir = sys.argv[1:5]
    # The SDK starts servers with a minimal environment; this one gets the
    # test's (its config directory, the MCP observation cap).
    params = StdioServerParameters(command=binary, args=["--root", root, "mcp"], env=dict(os.environ))
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            info = await session.initialize()
            result = {"server": info.serverInfo.name, "instructions": bool(info.instructions)}
            if scenario == "round_trip":
                result.update(await round_trip(session, workdir))
            else:
                result.update(await leave_running(session, workdir))
    # The transport is closed here: the server is gone, its jobs are not.
    print(json.dumps(result))


asyncio.run(main())
