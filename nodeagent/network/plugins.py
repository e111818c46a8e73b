"""Running one CNI plugin, as the CNI spec (1.0.0) says a runtime runs it.

The plugin binary is found in the plugin dir and run (behind `exec_prefix`, e.g. `ip netns
exec NS` when the caller lives in another network namespace) with the CNI_* environment and
its configuration as JSON on stdin; an ADD answers its result as JSON on stdout, and a
failure is a non-zero exit with the spec's error object (`code`, `msg`, `details`) on stdout.

Invariants: a plugin gets `PLUGIN_TIMEOUT_S` to answer, then is killed; every failure is a
`CniError` naming the plugin and the command, carrying the plugin's own message (its last
500 characters of output when it did not answer in the spec's shape).
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PLUGIN_TIMEOUT_S = 30.0


class Command(enum.Enum):
    ADD = "ADD"
    DEL = "DEL"
    CHECK = "CHECK"


class CniError(Exception):
    """A CNI plugin failed; the message is the plugin's, prefixed with what was asked."""

    def __init__(self, message: str, *, plugin: str, command: Command, code: int = 0) -> None:
        super().__init__(f"CNI {command.value} of {plugin!r} failed: {message}")
        self.plugin = plugin
        self.command = command
        self.code = code


async def invoke(
    command: Command,
    config: dict[str, Any],
    *,
    plugin_dir: Path,
    exec_prefix: Sequence[str],
    container_id: str,
    netns: str,
    ifname: str,
) -> dict[str, Any]:
    """Run the plugin `config["type"]`; an ADD's result (other commands answer {})."""
    plugin = str(config["type"])
    binary = plugin_dir / plugin
    if not binary.exists():
        raise CniError(
            f"plugin not found in {plugin_dir} (install containernetworking-plugins)",
            plugin=plugin,
            command=command,
        )
    env = {
        "CNI_COMMAND": command.value,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_PATH": str(plugin_dir),
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    }
    proc = await asyncio.create_subprocess_exec(
        *exec_prefix,
        str(binary),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        async with asyncio.timeout(PLUGIN_TIMEOUT_S):
            out, err = await proc.communicate(json.dumps(config).encode())
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise CniError(
            f"no answer within {PLUGIN_TIMEOUT_S:.0f} s", plugin=plugin, command=command
        ) from None
    if proc.returncode != 0:
        raise _plugin_error(out, err, plugin=plugin, command=command)
    if command is not Command.ADD:
        return {}
    try:
        return json.loads(out)
    except ValueError:
        raise CniError(
            f"unreadable result: {out.decode(errors='replace')[:200]}",
            plugin=plugin,
            command=command,
        ) from None


def _plugin_error(out: bytes, err: bytes, *, plugin: str, command: Command) -> CniError:
    try:
        body = json.loads(out)
        message = body.get("msg") or "unknown error"
        if body.get("details"):
            message += f" ({body['details']})"
        return CniError(message, plugin=plugin, command=command, code=int(body.get("code", 0)))
    except (ValueError, AttributeError):
        text = (err or out).decode(errors="replace").strip() or "exited with an error"
        return CniError(text[-500:], plugin=plugin, command=command)
