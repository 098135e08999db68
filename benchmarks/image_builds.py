"""Sample image builds: sizes and build times, cold and cached.

Run from the repository root with a Docker engine (nothing is pulled):

    python benchmarks/image_builds.py                 # Go; Python if the offline base exists
    python benchmarks/image_builds.py --python-base   # also time making the offline base

Prints a Markdown table. What each row means:

- **Go, cold**: an empty Go build cache (a fresh ``GOCACHE``, so the standard library is
  compiled too) and no image: ``go build`` + ``docker build`` of ``FROM scratch``.
- **Go, new version**: warm Go cache, a version never built: relink with the new
  ``-X main.version`` + ``docker build``. What CI pays for its second version.
- **Go/Python, cached**: the same version again: the content label matches, nothing is built.
- **Python, cold**: no sample image, the offline base present: ``docker build`` (COPY + ENV).
- **offline Python base**: ``debootstrap`` (minbase + Python) from apt's Debian mirror and
  ``docker import``; only with ``--python-base`` (it downloads ~40 MB).

Benchmark tags (``bench-*``) are removed at the end; the ``pytest-canary/sample-*:1.0/2.0``
images the tests use are left alone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from pytest_canary import images


@contextlib.contextmanager
def cold_go_cache() -> Iterator[None]:
    """A fresh, empty Go build cache for the duration."""
    before = os.environ.get("GOCACHE")
    with tempfile.TemporaryDirectory(prefix="bench-gocache-") as cache:
        os.environ["GOCACHE"] = cache
        try:
            yield
        finally:
            if before is None:
                del os.environ["GOCACHE"]
            else:
                os.environ["GOCACHE"] = before


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def remove(client: Any, *references: str) -> None:
    import docker

    for reference in references:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(reference, force=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--python-base", action="store_true", help="also time making the offline Python base"
    )
    args = parser.parse_args()
    quiet: Callable[[str], None] = lambda line: None  # noqa: E731
    rows: list[tuple[str, str, float, float]] = []
    with images.engine() as client:

        def measure(what: str, tag: str, build: Callable[[], object]) -> None:
            """Time one build and record the size of the image it left."""
            seconds = timed(build)
            rows.append((what, tag, seconds, images.image_size(client, tag)))

        def go(version: str) -> Callable[[], object]:
            return lambda: images.build_sample_image(version, client=client, progress=quiet)

        go_cold, go_next = images.sample_image_tag("bench-1"), images.sample_image_tag("bench-2")
        remove(client, go_cold, go_next)
        try:
            with cold_go_cache():
                measure("Go, cold (empty Go cache, no image)", go_cold, go("bench-1"))
            measure("Go, new version (warm Go cache)", go_next, go("bench-2"))
            measure("Go, cached (content label matches)", go_next, go("bench-2"))
        finally:
            remove(client, go_cold, go_next)

        base = images.OFFLINE_PYTHON_BASE
        made_base = False
        if args.python_base:
            base = "pytest-canary/python-base:bench"
            remove(client, base)
            measure(
                "offline Python base (debootstrap + import)",
                base,
                lambda: images.make_offline_python_base(base, client=client, progress=quiet),
            )
            made_base = True
        try:
            if images.image_exists(client, base):
                py = images.sample_image_tag("bench-1", "python")
                remove(client, py)
                try:

                    def build() -> object:
                        return images.build_sample_image(
                            "bench-1", "python", base_image=base, client=client, progress=quiet
                        )

                    measure("Python, cold (no image, base present)", py, build)
                    measure("Python, cached (content label matches)", py, build)
                finally:
                    remove(client, py)
            else:
                print(
                    f"(Python rows skipped: {base} is not on this engine; make it with "
                    "`python -m pytest_canary.images python-base` or pass --python-base)\n"
                )
        finally:
            if made_base:
                remove(client, base)

    print("| build | image | time | size |")
    print("|---|---|---:|---:|")
    for what, tag, seconds, size in rows:
        print(f"| {what} | `{tag}` | {seconds:.2f} s | {size / 1e6:.1f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
