"""Virtual hosts on shared data planes: which hosts a test claims, and the locks that keep two
tests of this machine from routing the same host at once."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pytest_canary.backends.kube.api import key_of
from pytest_canary.errors import BackendError

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    """Default progress sink: drop the line."""


def routed_hosts(objects: Iterable[Mapping[str, Any]]) -> set[str]:
    """Virtual hosts the objects claim on a shared data plane (``_`` for a host-less Ingress
    rule: ingress-nginx's catch-all server). In-mesh short names (no dot) are per namespace
    and left out."""
    hosts: set[str] = set()
    for obj in objects:
        group, kind, _ = key_of(obj)
        spec = obj.get("spec") or {}
        if kind == "Ingress":
            hosts |= {str(rule.get("host") or "_") for rule in spec.get("rules") or []}
        elif kind == "VirtualService":
            hosts |= {str(h) for h in spec.get("hosts") or []}
        elif kind == "Gateway" and group == "networking.istio.io":
            hosts |= {
                str(h).split("/")[-1]
                for srv in spec.get("servers") or []
                for h in srv.get("hosts") or []
            }
        elif kind == "Gateway":
            hosts |= {str(ln.get("hostname") or "*") for ln in spec.get("listeners") or []}
        elif kind == "HTTPRoute":
            hosts |= {str(h) for h in spec.get("hostnames") or []}
    return {h for h in hosts if "." in h or h in ("_", "*")}


class HostLocks:
    """Locks that keep two tests of this machine from routing the same virtual host at once.

    Namespaces separate objects, not hosts: two tests that both deploy host ``foo.bar``
    through the same ingress-nginx or Istio gateway would get each other's traffic (the
    oldest Ingress wins a host+path; VirtualServices for one host at one gateway merge).
    So each test holds a file lock per host it routes, from its first apply to its teardown;
    xdist workers sharing a kind cluster take turns for a host and run in parallel otherwise.
    Tests on other machines against the same cluster are not covered: give them other hosts.
    """

    def __init__(
        self, directory: Path | None, *, timeout: float = 1800.0, progress: Progress = _quiet
    ) -> None:
        self.directory = directory
        self.timeout = timeout
        self.progress = progress

    def hold(self, hosts: Iterable[str], owner: str) -> list[Any]:
        """Acquire the locks of ``hosts`` (sorted, to avoid lock-order deadlocks)."""
        if self.directory is None:
            return []
        import filelock

        self.directory.mkdir(parents=True, exist_ok=True)
        held: list[Any] = []
        try:
            for host in sorted(set(hosts)):
                safe = re.sub(r"[^A-Za-z0-9_.-]", "_", host)
                lock = filelock.FileLock(str(self.directory / f"host-{safe}.lock"))
                try:
                    lock.acquire(timeout=0)
                except filelock.Timeout:
                    self.progress(f"{owner}: waiting for host {host} (another test routes it)")
                    try:
                        lock.acquire(timeout=self.timeout)
                    except filelock.Timeout:
                        raise BackendError(
                            f"host {host} stayed in use by another test for {self.timeout:.0f}s "
                            f"(lock {lock.lock_file})"
                        ) from None
                held.append(lock)
        except BaseException:
            for lock in held:
                lock.release()
            raise
        return held
