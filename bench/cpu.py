"""Where the CPU went during a load: seconds of CPU per component, read from /proc.

A component is either a process tree (by the pid of its root, e.g. the API server and its
uvicorn workers) or an engine (by executable name).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")

# Executable name (as /proc/PID/stat shows it) to component.
ENGINES = {
    "mariadbd": "MariaDB",
    "mysqld": "MariaDB",
    "redis-server": "Redis",
    "beam.smp": "RabbitMQ",
    "erl_child_setup": "RabbitMQ",
    "epmd": "RabbitMQ",
    "java": "Elasticsearch",
}


def _processes() -> dict[int, tuple[str, int, float]]:
    """pid -> (executable name, parent pid, CPU seconds so far)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[1] is ppid; utime and stime are fields 14 and 15 of stat (1-based).
        found[int(entry.name)] = (
            name,
            int(fields[1]),
            (int(fields[11]) + int(fields[12])) / _TICKS,
        )
    return found


def _machine() -> float:
    """CPU seconds the whole machine has been busy (all cores, /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICKS


def snapshot(trees: dict[int, str]) -> dict[str, float]:
    """CPU seconds per component now; `trees` names process trees by their root pid.

    "load generator" is what this process's finished children used (wrk, vegeta run to
    completion); "other" is the rest of the machine's busy time (the kernel's interrupt work,
    anything else running).
    """
    processes = _processes()
    totals: dict[str, float] = defaultdict(float)
    for pid, (name, _, seconds) in processes.items():
        component = ENGINES.get(name)
        ancestor = pid
        while component is None and ancestor in processes and ancestor > 1:
            component = trees.get(ancestor)
            ancestor = processes[ancestor][1]
        if component is not None:
            totals[component] += seconds
    reaped = os.times()
    totals["load generator"] = reaped.children_user + reaped.children_system
    totals["other"] = _machine() - sum(totals.values())
    return dict(totals)


def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds per component between two snapshots, largest first."""
    used = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
    return dict(sorted(used.items(), key=lambda item: -item[1]))
