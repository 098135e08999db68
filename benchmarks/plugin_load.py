"""What loading the plugin costs a pytest run that does not use it.

pytest auto-loads pytest-canary in every run of every project where it is installed, so its
import and its configure-time hooks are paid by every ``pytest`` start. This times
``pytest --co -q`` on an empty project (one trivial test) with and without the plugin, several
runs each, interleaved, and prints the medians and their ratio (goal: at most 1.05x).

Two settings:

* ``installed plugins``: every plugin installed here is loaded, as in a user's run; without
  ours is ``-p no:canary``;
* ``ours alone``: ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``, with ``-p pytest_canary.plugin``
  against nothing -- our cost, not hidden by what other plugins import anyway.

Usage::

    python benchmarks/plugin_load.py            # 15 runs of each, ~1 min
    python benchmarks/plugin_load.py --runs 31
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_run(folder: Path, args: list[str], environ: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", *args],
        cwd=folder,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"pytest {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def compare(
    folder: Path, runs: int, with_ours: list[str], without: list[str], autoload: bool
) -> tuple[float, float]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    if not autoload:
        environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    timed_run(folder, with_ours, environ)  # warm the file-system cache and the .pyc files
    timed_run(folder, without, environ)
    times_with: list[float] = []
    times_without: list[float] = []
    for _ in range(runs):  # interleaved, so that a burst of load hits both alike
        times_with.append(timed_run(folder, with_ours, environ))
        times_without.append(timed_run(folder, without, environ))
    return statistics.median(times_with), statistics.median(times_without)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each (default 15)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pytest-canary-load-") as tmp:
        folder = Path(tmp)
        (folder / "test_empty.py").write_text("def test_nothing():\n    pass\n")
        print(f"pytest --co -q on an empty project, median of {args.runs} runs each")
        print(f"{'setting':<20} {'with plugin':>12} {'without':>10} {'ratio':>7}")
        for label, with_ours, without, autoload in (
            ("installed plugins", [], ["-p", "no:canary"], True),
            ("ours alone", ["-p", "pytest_canary.plugin"], [], False),
        ):
            with_time, without_time = compare(folder, args.runs, with_ours, without, autoload)
            print(
                f"{label:<20} {with_time * 1000:>10.0f}ms {without_time * 1000:>8.0f}ms "
                f"{with_time / without_time:>6.3f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
