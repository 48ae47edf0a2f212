"""Process trees from /proc: descendants by ppid walk, summed PSS, and pid-exact signalling.

A process is identified by (pid, start time) so that a recycled pid is never mistaken for one of
ours, and never signalled.
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_TYPE = re.compile(rb"--type=([a-z-]+)")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    start: int
    name: str

    @property
    def is_browser(self) -> bool:
        # comm is cut at 15 characters ("chromium-headle"), so match on prefixes.
        return self.name.startswith(("chrom", "headless_shell"))


def read_proc(pid: int) -> Proc | None:
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses; the fields after the last ")" are fixed.
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return Proc(pid=pid, ppid=int(fields[1]), start=int(fields[19]), name=name)


def all_procs() -> list[Proc]:
    procs = []
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (proc := read_proc(int(entry.name))) is not None:
            procs.append(proc)
    return procs


def descendants(root: int, *, include_root: bool = False) -> list[Proc]:
    procs = all_procs()
    children: dict[int, list[Proc]] = {}
    for proc in procs:
        children.setdefault(proc.ppid, []).append(proc)
    found = [p for p in procs if p.pid == root] if include_root else []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child.pid)
    return found


def alive(proc: Proc) -> bool:
    current = read_proc(proc.pid)
    return current is not None and current.start == proc.start


def pss_kib(pid: int) -> int:
    try:
        text = (PROC / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def tree_pss_mib(root: int) -> tuple[float, list[Proc]]:
    """Summed PSS of `root` and every descendant, and the processes that were counted."""
    procs = descendants(root, include_root=True)
    return sum(pss_kib(p.pid) for p in procs) / 1024, procs


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process, all its threads included."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_with_reaped(pid: int) -> float:
    """User + system CPU of `pid` and of the children it has reaped."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    return sum(int(field) for field in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def tree_cpu_by_kind(root: int) -> dict[str, float]:
    """CPU seconds spent so far by `root` and everything under it, by process kind.

    An exited process's time moves into its parent's cutime/cstime once the parent reaps it, so
    summing own and reaped-children time over the live tree loses only orphaned processes
    (Playwright's driver and Chromium reap their own). Exited renderers therefore count under the
    zygote that forked them.
    """
    spent: dict[str, float] = {}
    for process in descendants(root, include_root=True):
        name = kind(process)
        spent[name] = spent.get(name, 0.0) + _cpu_with_reaped(process.pid)
    return spent


def tree_cpu_seconds(root: int) -> float:
    return sum(tree_cpu_by_kind(root).values())


def kind(process: Proc) -> str:
    """A Chromium process's role from its --type= switch, else its command name.

    Chromium rewrites the command lines of the processes its zygote forks into one string, so the
    switch is searched for in the whole line.
    """
    try:
        line = (PROC / str(process.pid) / "cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return process.name
    if (switch := _TYPE.search(line)) is not None:
        return "chromium " + switch[1].decode(errors="replace")
    if process.is_browser:
        return "chromium browser"
    return "playwright driver" if process.name.startswith("node") else process.name


def kill_exact(proc: Proc, sig: int = signal.SIGKILL) -> bool:
    """Signals `proc` only if that pid still belongs to the process we recorded."""
    if not alive(proc):
        return False
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        return False
    return True


def load_average() -> float:
    """One-minute load: other work on the machine skews every figure, so the report shows it."""
    return os.getloadavg()[0]
