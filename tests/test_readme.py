"""The README's examples are run as tests, so the docs cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples() -> None:
    assert any("def test_" in block for block in python_blocks())


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_example_passes(pytester: pytest.Pytester, index: int) -> None:
    block = python_blocks()[index]
    if "def test_" not in block:
        pytest.skip("not a test example")
    pytester.makepyfile(block)
    result = pytester.runpytest("--canary-seed=11")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 1 and not outcomes.get("failed"), result.stdout.str()
