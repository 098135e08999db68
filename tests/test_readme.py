"""The README's examples are run as tests, so the docs cannot rot."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHOP = ROOT / "suites" / "manifests" / "shop" / "nginx"
ROLLOUT = ROOT / "suites" / "manifests" / "rollouts" / "shop"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples() -> None:
    assert any("def test_" in block for block in python_blocks())


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_example_passes(pytester: pytest.Pytester, index: int) -> None:
    block = python_blocks()[index]
    if "def test_" not in block:
        pytest.skip("not a test example")
    if "registry.example" in block:
        pytest.skip("needs the user's own image in Docker (--canary-runtime=docker)")
    if "deploy/shop/" in block:  # the README's own-manifests example: the shop example set
        shutil.copytree(SHOP, pytester.path / "deploy" / "shop")
    if "deploy/rollout/" in block:  # the own-Rollout example: the rollouts example set
        shutil.copytree(ROLLOUT, pytester.path / "deploy" / "rollout")
    pytester.makepyfile(block)
    result = pytester.runpytest("--canary-seed=11")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 1 and not outcomes.get("failed"), result.stdout.str()
