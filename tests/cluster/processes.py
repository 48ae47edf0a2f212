"""Processes as /proc shows them, and the waits, stops and log tails the cluster helpers share.

A process is named by its pid and its start time, so a recycled pid is never taken for one of
ours. Processes are found by a tag in their environment too (`TAG_VARIABLE`), which Playwright's
driver and Chromium inherit, so orphans reparented away from their service are still found.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TAG_VARIABLE = "SNAPSHOTD_PROCESS_TAG"
CHROMIUM_NAMES = ("chrom", "headless")  # /proc/PID/comm of every Chromium build's processes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(what: str, check: Any, timeout: float, interval: float = 0.2) -> Any:
    """Polls `check` until it returns something truthy, and returns that."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def stop_group(process: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM to the process, then SIGKILL to its whole group if it has not gone in time."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.wait(10)


def tail(path: Path, lines: int = 200) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "(gone)"


@dataclass(frozen=True)
class ProcStat:
    parent: int
    started: int  # clock ticks after boot: with the pid, names one process even if pids recycle
    running: bool  # not a zombie


def read_stat(pid: int) -> ProcStat | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return ProcStat(int(fields[1]), int(fields[19]), fields[0] != "Z")


def all_processes() -> dict[int, ProcStat]:
    """Every process on the machine, read from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := read_stat(int(entry.name))) is not None:
            found[int(entry.name)] = stat
    return found


def is_chromium(pid: int) -> bool:
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    return name.startswith(CHROMIUM_NAMES)


def is_running(pid: int) -> bool:
    """True for a live process (a zombie has finished: it only waits for its parent)."""
    stat = read_stat(pid)
    return stat is not None and stat.running


def tagged_processes(prefix: str) -> list[int]:
    """Live processes whose environment carries a tag starting with `prefix`, orphans too."""
    wanted = f"{TAG_VARIABLE}={prefix}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environment = (entry / "environ").read_bytes()
        except OSError:
            continue
        tagged = any(item.startswith(wanted) for item in environment.split(b"\0"))
        if tagged and is_running(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)
