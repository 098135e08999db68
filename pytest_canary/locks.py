"""Inter-process file locks with a deadline.

Sessions of this machine (xdist workers, parallel CI jobs, two terminals) take turns through
file locks: one cluster setup, one build or ``kind load`` of an image, one download of a file
at a time. A session that has to wait says for what; a lock held past its deadline ends the
wait with an error naming the lock file, never a session waiting forever.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pytest_canary.errors import BackendError


class LockTimeout(BackendError):
    """Another process held a lock past the deadline; the message names the lock file."""


def _quiet(message: str) -> None:
    """Default progress sink: drop the line."""


@contextmanager
def file_lock(
    path: str | Path,
    *,
    timeout: float,
    what: str,
    progress: Callable[[str], None] = _quiet,
    error: type[LockTimeout] = LockTimeout,
) -> Iterator[None]:
    """Hold the inter-process lock ``path`` for the block, waiting at most ``timeout`` seconds.

    Args:
        path: the lock file (its directory is created).
        timeout: seconds to wait for another holder.
        what: what the lock guards, in words ("the build of pytest-canary/sample-go:1.0").
        progress: told once when the lock is busy and this process waits.
        error: the :class:`LockTimeout` type to raise.

    Raises:
        LockTimeout: (or ``error``) naming ``what``, the wait and the lock file.
    """
    import filelock

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        progress(f"waiting for {what}: another session holds {path}")
        try:
            lock.acquire(timeout=timeout)
        except filelock.Timeout:
            raise error(
                f"{what}: another session kept the lock {path} for {timeout:.0f}s; if no "
                "pytest-canary session runs any more, the lock is stale: delete the file"
            ) from None
    try:
        yield
    finally:
        lock.release()
