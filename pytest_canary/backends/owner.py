"""Who owns what a run leaves behind: one pytest process, and whether it still runs.

Containers of the Docker runtime, namespaces and cluster-user records of the cluster backends
all carry the identity of the process that made them -- host name, pid and the pid's start
time -- so that the next session can tell the leftovers of a killed run from the objects of a
run still going (:func:`running_here`). A pid alone is not enough: pids are recycled, (pid,
start time) pairs are not. Another host's pid means nothing here; callers decide what to do
with those (the Docker runtime keeps them; the cluster backends read a renewed lease, see
:mod:`pytest_canary.backends.kube.sweep`).
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path


def process_start_time(pid: int) -> str | None:
    """The start time of a running process (clock ticks after boot, from ``/proc``), ``""``
    when it runs but the system has no ``/proc`` to tell when it started (macOS), or None
    when ``pid`` does not run (zombies included)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if sys.platform.startswith("linux"):
            return None
        return "" if _signalable(pid) else None
    except OSError:
        return None
    # Fields after the command name, which may itself contain spaces and parentheses.
    fields = stat.rpartition(")")[2].split()
    if not fields or fields[0] in ("Z", "X"):
        return None
    return fields[19] if len(fields) > 19 else ""


def _signalable(pid: int) -> bool:
    """Whether a process of that pid exists (signal 0 checks without sending anything)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Owner:
    """One process on one host: what makes a run's leftovers recognisable.

    Attributes:
        host: ``socket.gethostname()`` of the process.
        pid: its pid.
        pid_start: its start time (:func:`process_start_time`; ``""`` when unknown).
    """

    host: str
    pid: int
    pid_start: str

    @classmethod
    def this_process(cls) -> Owner:
        """The calling process."""
        pid = os.getpid()
        return cls(socket.gethostname(), pid, process_start_time(pid) or "")

    def running_here(self) -> bool | None:
        """True while the process runs, False once it is gone (or its pid was recycled by
        another process), None when it ran on another host (this host cannot tell)."""
        if self.host != socket.gethostname():
            return None
        started = process_start_time(self.pid)
        if started is None:
            return False
        return not self.pid_start or not started or started == self.pid_start

    def describe(self) -> str:
        """``pid 4242 on host ci-7``."""
        return f"pid {self.pid} on host {self.host}"
