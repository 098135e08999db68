"""Who owns what a run leaves behind: one pytest process, and whether it still runs.

Containers of the Docker runtime, namespaces and cluster-user records of the cluster backends
all carry the identity of the process that made them -- host name, boot id, pid namespace,
pid and the pid's start time -- so that the next session can tell the leftovers of a killed
run from the objects of a run still going (:func:`Owner.running_here`). A pid alone is not
enough: pids are recycled, (pid, start time) pairs are not. A host name alone does not say
"this machine": two machines may share one, and containers started with ``--network=host``
share the host's name but not its processes. So a pid is looked up only when the host name,
the boot id (``/proc/sys/kernel/random/boot_id``) and the pid namespace (the inode of
``/proc/self/ns/pid``) all match this process's; otherwise this machine cannot tell, and
callers decide (the Docker runtime keeps such objects; the cluster backends read a renewed
lease, see :mod:`pytest_canary.backends.kube.sweep`).
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


def machine_identity() -> tuple[str, str]:
    """(boot id, pid namespace) of this process: what tells this machine and container from
    another with the same host name. Both ``""`` where there is no ``/proc`` (macOS)."""
    if not sys.platform.startswith("linux"):
        return "", ""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = ""
    try:
        pid_ns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pid_ns = ""
    return boot_id, pid_ns


@dataclass(frozen=True)
class Owner:
    """One process on one machine: what makes a run's leftovers recognisable.

    Attributes:
        host: ``socket.gethostname()`` of the process.
        pid: its pid.
        pid_start: its start time (:func:`process_start_time`; ``""`` when unknown).
        boot_id: the boot id of its machine (``""`` when unknown, or a record written
            before it was kept).
        pid_ns: the inode of its pid namespace (``""`` likewise).
    """

    host: str
    pid: int
    pid_start: str
    boot_id: str = ""
    pid_ns: str = ""

    @classmethod
    def this_process(cls) -> Owner:
        """The calling process."""
        pid = os.getpid()
        boot_id, pid_ns = machine_identity()
        return cls(socket.gethostname(), pid, process_start_time(pid) or "", boot_id, pid_ns)

    def same_pid_space(self) -> bool:
        """Whether this process sees the owner's pids: same host name, boot id and pid
        namespace (all unknown counts as the same only where none is ever known, macOS)."""
        return self.host == socket.gethostname() and (self.boot_id, self.pid_ns) == (
            machine_identity()
        )

    def running_here(self) -> bool | None:
        """True while the process runs, False once it is gone (or its pid was recycled by
        another process), None when its pids are not this process's to look up (another
        machine, another container with the same host name, another boot, or a record
        that does not say)."""
        if not self.same_pid_space():
            return None
        started = process_start_time(self.pid)
        if started is None:
            return False
        return not self.pid_start or not started or started == self.pid_start

    def describe(self) -> str:
        """``pid 4242 on host ci-7``."""
        return f"pid {self.pid} on host {self.host}"
