"""Failure evidence on disk (``--canary-artifacts DIR``): one folder per failed test, one file
per diagnostics section, so CI can upload them and a human can grep them."""

from __future__ import annotations

import re
from pathlib import Path

from pytest_canary.backends.base import Diagnostics


def slug(text: str, limit: int = 80) -> str:
    """A file-system-safe name: letters, digits, ``.``, ``_`` and ``-``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return cleaned[:limit].rstrip("-.") or "item"


def write_artifacts(diagnostics: Diagnostics, directory: Path, test_id: str) -> Path:
    """Write every section of ``diagnostics`` to ``directory/<test>/<nn>-<section>.txt``.

    Returns:
        The test's folder (created; an earlier folder of the same test is reused).

    Example:
        >>> diag = Diagnostics({"events": "Warning BackOff pod/a"})
        >>> write_artifacts(diag, tmp, "tests/test_x.py::test_a").name  # doctest: +SKIP
        'tests-test_x.py-test_a'
    """
    folder = directory / slug(test_id.replace("::", "-"), 120)
    folder.mkdir(parents=True, exist_ok=True)
    for index, (name, text) in enumerate(diagnostics.sections.items(), start=1):
        target = folder / f"{index:02d}-{slug(name)}.txt"
        target.write_text(text.rstrip() + "\n", encoding="utf-8")
    return folder
