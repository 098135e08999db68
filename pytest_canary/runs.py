"""Records of past runs (seed and outcome), so that ``--canary-seed=last`` repeats the run the
user means: the last one that failed.

Each run writes its own small file (``<finished>-<pid>.json``, replaced atomically) instead
of one shared entry: two runs in one folder at the same time cannot overwrite each other's
record. Only the newest :data:`KEEP` records are kept.

Example:
    >>> record_run(folder, RunRecord(seed=42, failed=True, finished=time.time()))  # doctest: +SKIP
    >>> last_run(folder).seed                                                     # doctest: +SKIP
    42
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

KEEP = 20  # records kept: enough for the runs of a day of work, small enough to read at start


@dataclass(frozen=True)
class RunRecord:
    """One finished run.

    Attributes:
        seed: the seed its routing decisions used.
        failed: whether it failed (failed tests, or interrupted).
        finished: when it finished (seconds since the epoch).
        pid: the pytest process.
    """

    seed: int
    failed: bool
    finished: float
    pid: int = 0

    def describe(self) -> str:
        """``the failed run of 11:42:10 (pid 4242)``."""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.finished))
        return f"the {'failed' if self.failed else 'passed'} run of {when} (pid {self.pid})"


def record_run(folder: Path, record: RunRecord) -> Path:
    """Write ``record`` into ``folder`` and drop the records beyond the newest :data:`KEEP`."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{record.finished:017.6f}-{record.pid or os.getpid()}.json"
    target = folder / name
    partial = folder / f".{name}.partial"
    partial.write_text(json.dumps(asdict(record)), encoding="utf-8")
    os.replace(partial, target)  # readers never see half a record
    for old in sorted(folder.glob("*.json"))[:-KEEP]:
        old.unlink(missing_ok=True)  # a concurrent run may have removed it already
    return target


def runs(folder: Path) -> list[RunRecord]:
    """Every readable record, oldest first (a damaged file is skipped)."""
    found: list[RunRecord] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            found.append(
                RunRecord(
                    int(data["seed"]),
                    bool(data["failed"]),
                    float(data["finished"]),
                    int(data.get("pid", 0)),
                )
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(found, key=lambda r: r.finished)


def last_run(folder: Path) -> RunRecord | None:
    """The run ``--canary-seed=last`` repeats: the newest failed one of the kept records,
    else the newest one; None when no run was recorded."""
    recorded = runs(folder)
    failed = [r for r in recorded if r.failed]
    if failed:
        return failed[-1]
    return recorded[-1] if recorded else None
