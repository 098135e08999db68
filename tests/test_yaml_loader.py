"""Hostile YAML is refused fast, with an error naming the file and line
(``pytest_canary.yaml_loader``, used by ``byo.load``, ``lint_paths``, ``canary.apply``)."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from pytest_canary import CanaryConfigError, byo, lint
from pytest_canary.validate import validate_objects
from pytest_canary.yaml_loader import (
    DEFAULT_LIMITS,
    YamlBudget,
    YamlLimits,
    check_bounded,
    load_all,
    uses_libyaml,
)

# 9 levels of 9 aliases each: 9**9 = 387 million strings once expanded.
ALIAS_BOMB = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: lol
  annotations:
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_loads_with_libyaml() -> None:
    assert uses_libyaml()


@pytest.mark.parametrize("entry", ["load", "lint_paths", "validate"])
def test_alias_bomb_fails_at_once_naming_the_file(tmp_path: Path, entry: str) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    assert len(ALIAS_BOMB) < 700
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    with pytest.raises(CanaryConfigError) as caught:
        if entry == "load":
            byo.load(path)
        elif entry == "lint_paths":
            lint.lint_paths(tmp_path)
        else:  # objects built in Python with the same sharing go through validate_objects
            lol = ["lol"] * 9
            for _ in range(8):
                lol = [lol] * 9
            problems = validate_objects([{"apiVersion": "v1", "kind": "ConfigMap", "x": lol}])
            raise CanaryConfigError(str(problems[0]))
    assert time.perf_counter() - started < 1.0  # was 110 s and 5.8 GiB
    assert peak_rss_mib() - rss_before < 100
    message = str(caught.value)
    assert "nodes once" in message
    if entry != "validate":
        assert f"{path}, document 1, line " in message


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: &m {name: x, labels: *m}\n")
    with pytest.raises(CanaryConfigError, match=r"loop\.yaml, document 1, line 3.*contains it"):
        byo.load(path)


def test_a_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  annotations: {a: '1'}\n"
        "  labels: {app: web}\n  annotations: {b: '2'}\n"
    )
    with pytest.raises(CanaryConfigError) as caught:
        byo.load(path)
    assert str(caught.value).startswith(f"{path}, document 1, line 7, column 3: key 'annotations'")
    assert "first at line 5" in str(caught.value)


def test_merge_keys_are_not_duplicates() -> None:
    text = "base: &b {a: 1}\nx:\n  <<: *b\n  c: 2\n"
    assert load_all(text, "merge.yaml") == [{"base": {"a": 1}, "x": {"a": 1, "c": 2}}]


def test_deep_nesting_is_refused_not_a_crash(tmp_path: Path) -> None:
    # libyaml's composer recurses in C: 100,000 levels would crash the process.
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(CanaryConfigError, match=r"deep\.yaml, document 1, line 1.*levels deep"):
        byo.load(path)


def test_too_many_documents_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text("---\na: 1\n" * (DEFAULT_LIMITS.max_documents + 1))
    with pytest.raises(CanaryConfigError, match=r"document 501, line .*more than 500 documents"):
        byo.load(path)


def test_input_size_is_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:
        handle.truncate(DEFAULT_LIMITS.max_bytes + 1)  # sparse: nothing is written or read
    with pytest.raises(CanaryConfigError, match=r"big\.yaml: 4194305 bytes is more than"):
        byo.load(big)


def test_size_limit_counts_every_file_of_one_call(tmp_path: Path) -> None:
    limits = YamlLimits(max_bytes=100)
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(f"# {'x' * 60}\n")
    with pytest.raises(CanaryConfigError, match=r"b\.yaml: 63 bytes after 63 bytes of earlier"):
        byo.load(tmp_path, limits=limits)


def test_huge_string_values_are_bounded_once_expanded() -> None:
    text = "a: &s " + "x" * 1000 + "\nb: [" + ", ".join(["*s"] * 2000) + "]\n"
    budget = YamlBudget(YamlLimits(max_scalar_bytes=1_000_000))
    with pytest.raises(CanaryConfigError, match="bytes of values once aliases are expanded"):
        load_all(text, "strings.yaml", budget)


def test_invalid_yaml_names_file_document_and_line() -> None:
    with pytest.raises(CanaryConfigError, match=r"^x\.yaml, document 2: not valid YAML at line 4"):
        load_all("a: 1\n---\nb: [\n", "x.yaml")


def test_python_objects_that_contain_themselves_are_a_problem_not_a_recursion() -> None:
    loop: dict[str, object] = {"apiVersion": "v1", "kind": "ConfigMap"}
    loop["data"] = loop
    with pytest.raises(CanaryConfigError, match="contains itself"):
        check_bounded(loop, "item 0")
    problems = validate_objects([loop])
    assert "contains itself" in problems[0].message


def test_shared_parts_within_bounds_validate_as_usual(tmp_path: Path) -> None:
    path = tmp_path / "shared.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, labels: &l {app: web}}\n"
        "spec: {selector: *l, ports: [{port: 80}]}\n"
    )
    loaded = byo.load(path)
    byo.check_schemas(loaded)
    assert loaded.objects[0]["spec"]["selector"] == {"app": "web"}


@pytest.mark.parametrize("value", ["1" * 5000, "2001-13-45"])
def test_values_the_constructor_cannot_build_are_config_errors(value: str) -> None:
    with pytest.raises(CanaryConfigError, match=r"^v\.yaml, document 1: a value cannot be read"):
        load_all(f"a: {value}\n", "v.yaml")
