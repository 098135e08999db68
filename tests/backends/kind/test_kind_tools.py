"""kind and kubectl: found on PATH or given, kind's version checked, and every message saying
what to install for this machine's architecture (pytest-kind downloads amd64 only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_canary.backends import addons
from pytest_canary.backends.kind.tools import (
    Tools,
    check_kind_version,
    find_tools,
    kind_download_url,
    parse_kind_version,
)
from pytest_canary.errors import BackendError


def executable(directory: Path, name: str, script: str = "#!/bin/sh\n") -> Path:
    path = directory / name
    path.write_text(script)
    path.chmod(0o755)
    return path


def test_tools_come_from_path(tmp_path: Path) -> None:
    for name in ("kind", "kubectl"):
        executable(tmp_path, name)
    tools = find_tools({"PATH": str(tmp_path)})
    assert tools == Tools(kind=str(tmp_path / "kind"), kubectl=str(tmp_path / "kubectl"))


def test_given_paths_win_over_path(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    for name in ("kind", "kubectl"):
        executable(tmp_path / "bin", name)
    own = executable(tmp_path, "my-kind")
    tools = find_tools({"PATH": str(tmp_path / "bin")}, kind_path=str(own))
    assert tools.kind == str(own) and tools.kubectl == str(tmp_path / "bin" / "kubectl")


@pytest.mark.parametrize(
    ("platform", "binary"),
    [
        ("linux/amd64", "kind-linux-amd64"),
        ("linux/arm64", "kind-linux-arm64"),
        ("darwin/arm64", "kind-darwin-arm64"),
    ],
)
def test_missing_kind_names_the_binary_for_this_machine(
    tmp_path: Path, platform: str, binary: str
) -> None:
    executable(tmp_path, "kubectl")
    with pytest.raises(BackendError) as caught:
        find_tools({"PATH": str(tmp_path)}, minimum="v0.31.0", platform=platform)
    message = str(caught.value)
    assert "needs `kind` v0.31.0 or newer on PATH" in message
    assert f"https://kind.sigs.k8s.io/dl/v0.31.0/{binary}" in message
    assert "--canary-kind-bin" in message


def test_pytest_kinds_amd64_download_is_refused_on_other_architectures(tmp_path: Path) -> None:
    executable(tmp_path, "kubectl")
    env = {"PATH": str(tmp_path), "KIND_VERSION": "v0.31.0"}
    assert find_tools(env, platform="linux/amd64").kind is None  # pytest-kind may fetch it
    with pytest.raises(BackendError) as caught:
        find_tools(env, platform="linux/arm64")
    assert "downloads the amd64 build only, which does not run on this linux/arm64" in str(
        caught.value
    )
    assert "kind-linux-arm64" in str(caught.value)
    url = {**env, "KIND_DOWNLOAD_URL": kind_download_url("v0.31.0", "linux/arm64")}
    assert find_tools(url, platform="linux/arm64").kind is None


def test_missing_kubectl_is_named(tmp_path: Path) -> None:
    executable(tmp_path, "kind")
    with pytest.raises(BackendError, match="needs `kubectl` on PATH"):
        find_tools({"PATH": str(tmp_path)})


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("kind v0.31.0 go1.25.5 linux/amd64\n", (0, 31, 0)),
        ("kind v0.17.0 go1.19.2 linux/amd64", (0, 17, 0)),
        ("kind v0.33.0-alpha.12+4c2e7e5a06b1ab go1.25.5 darwin/arm64", (0, 33, 0)),
        ("0.31.0", None),
    ],
)
def test_kind_version_output_is_read(output: str, version: tuple[int, int, int] | None) -> None:
    # kind pkg/cmd/kind/version/version.go DisplayVersion: "kind v" + Version() + go + os/arch
    assert parse_kind_version(output) == version


def test_a_kind_older_than_the_pinned_minimum_is_refused_with_what_to_install(
    tmp_path: Path,
) -> None:
    old = executable(tmp_path, "kind", "#!/bin/sh\necho kind v0.20.0 go1.20.4 linux/arm64\n")
    minimum = addons.load_kind_pin().minimum
    with pytest.raises(BackendError) as caught:
        check_kind_version(str(old), minimum, platform="linux/arm64")
    message = str(caught.value)
    assert f"kind v0.20.0 ({old}) is older than {minimum}" in message
    assert f"https://kind.sigs.k8s.io/dl/{minimum}/kind-linux-arm64" in message
    new = executable(tmp_path, "kind-new", f"#!/bin/sh\necho kind {minimum} go1.25.5 linux/amd64\n")
    assert check_kind_version(str(new), minimum).startswith(f"kind {minimum}")


def test_a_command_that_overruns_its_timeout_keeps_what_it_printed(tmp_path: Path) -> None:
    """kind create / load / delete stopped at their deadline: the error carries their last
    lines, which say where they hung."""
    from pytest_canary.backends.kind.tools import run_tool

    hanging = executable(
        tmp_path,
        "kind",
        "#!/bin/sh\necho ' ✓ Ensuring node image (kindest/node:v1.35.0)'\n"
        "echo ' • Preparing nodes 📦' >&2\nexec sleep 60\n",
    )
    with pytest.raises(BackendError) as caught:
        run_tool([str(hanging), "create", "cluster"], timeout=3)
    message = str(caught.value)
    assert message.startswith(f"{hanging} create cluster did not finish within 3s and was stopped")
    assert "Preparing nodes" in message and "Ensuring node image" in message


def test_a_failing_command_reports_its_exit_status_and_output(tmp_path: Path) -> None:
    from pytest_canary.backends.kind.tools import run_tool

    failing = executable(
        tmp_path, "kind", "#!/bin/sh\necho 'ERROR: failed to create cluster: boom' >&2\nexit 1\n"
    )
    with pytest.raises(BackendError, match=r"failed \(exit 1\):\nERROR: failed to create cluster"):
        run_tool([str(failing), "create", "cluster"], timeout=30)
