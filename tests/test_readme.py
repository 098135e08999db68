"""The README's examples are run as tests, so the docs cannot rot."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHOP = ROOT / "suites" / "manifests" / "shop"  # the layout README describes: nginx/, istio/, ...
ROLLOUT = ROOT / "suites" / "manifests" / "rollouts" / "shop"

#: README examples that are, word for word, a test the suite runs anyway: the README test
#: checks that the block still is that test (same functions and constants, docstrings and
#: annotations aside) instead of running the same release a second time. The value: the
#: file that holds the test and, when the test is the text of a constant there, its name.
RUN_BY: dict[str, tuple[Path, str | None]] = {
    # by tests/test_plugin.py::test_issue_example_passes, which also checks its verdict table
    "test_weighted_canary": (ROOT / "tests" / "test_plugin.py", "ISSUE_EXAMPLE"),
    "test_argo_canary_steps": (ROOT / "suites" / "test_argo_rollouts.py", None),
}


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _definitions(source: str) -> dict[str, str]:
    """The top-level functions and constants of ``source`` by name, each as its syntax tree
    without docstrings and annotations (``ast.dump``); constants by their value."""
    found: dict[str, str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            if ast.get_docstring(node) is not None:
                node.body = node.body[1:]
            node.returns = None
            for arg in node.args.args:
                arg.annotation = None
            found[node.name] = ast.dump(node)
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    found[target.id] = ast.dump(node.value)
    return found


def _source_of(path: Path, constant: str | None) -> str:
    """The text of ``path``, or of the string constant ``constant`` in it."""
    text = path.read_text()
    if constant is None:
        return text
    (node,) = (
        n.value
        for n in ast.parse(text).body
        if isinstance(n, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == constant for t in n.targets)
    )
    source = ast.literal_eval(node)
    assert isinstance(source, str)
    return source


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
    ours = _definitions(block)
    runner = next((RUN_BY[name] for name in ours if name in RUN_BY), None)
    if runner is not None:
        path, constant = runner
        theirs = _definitions(_source_of(path, constant))
        differ = sorted(name for name in ours if theirs.get(name) != ours[name])
        assert not differ, (
            f"README example {index} is no longer the test in {path.relative_to(ROOT)} that runs "
            f"it ({', '.join(differ)} differ): make them the same again, or take it out of RUN_BY"
        )
        return
    pytester.makepyfile(block)
    result = pytester.runpytest("--canary-seed=11")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 1 and not outcomes.get("failed"), result.stdout.str()
