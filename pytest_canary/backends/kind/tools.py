"""Tools: the ``kind`` and ``kubectl`` binaries the kind backend runs, and their versions.

``kind`` and ``kubectl`` come from PATH (or ``--canary-kind-bin`` / ``--canary-kubectl-bin``,
pytest-kind's ``--kind-bin`` / ``--kind-kubectl-bin``). pytest-kind would otherwise download
kind v0.17.0 / kubectl v1.25.3, for amd64 only (pytest_kind/cluster.py ``ensure_kind``: URL
``kind-<os>-amd64``), too old for current node images: that download is allowed only when the
user asks for it (``KIND_VERSION`` / ``KIND_DOWNLOAD_URL``), and on other architectures only
with ``KIND_DOWNLOAD_URL``. ``kind version`` must be at least the kind release whose node
image is pinned (``fixtures/addons.yaml``); every message says what to install for this
machine's OS and architecture.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_canary.backends.addons import host_platform
from pytest_canary.errors import BackendError

KIND_INSTALL = "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"


def kind_download_url(version: str, platform: str | None = None) -> str:
    """The kind release binary for a platform (kind's quick start: ``kind.sigs.k8s.io/dl/
    <version>/kind-<os>-<arch>``)."""
    system, _, arch = (platform or host_platform()).partition("/")
    return f"https://kind.sigs.k8s.io/dl/{version}/kind-{system}-{arch}"


@dataclass(frozen=True)
class Tools:
    """Paths of the binaries the kind backend runs."""

    kind: str | None
    kubectl: str


def find_tools(
    environ: Mapping[str, str] | None = None,
    *,
    kind_path: str | None = None,
    kubectl_path: str | None = None,
    minimum: str = "v0.31.0",
    platform: str | None = None,
) -> Tools:
    """kind and kubectl: the paths given, else from PATH.

    Raises:
        BackendError: naming what is missing and how to install it for this machine.
    """
    env = dict(os.environ if environ is None else environ)
    search = env.get("PATH")
    kind = kind_path or shutil.which("kind", path=search)
    kubectl = kubectl_path or shutil.which("kubectl", path=search)
    platform = platform or host_platform()
    if kind is None:
        asked = env.get("KIND_VERSION") or env.get("KIND_DOWNLOAD_URL")
        if not asked:
            raise BackendError(
                f"the kind backend needs `kind` {minimum} or newer on PATH ({KIND_INSTALL}); "
                f"for this machine ({platform}): curl -Lo kind "
                f"{kind_download_url(minimum, platform)} && chmod +x kind, then move it "
                "onto PATH (or pass --canary-kind-bin=PATH)"
            )
        if not platform.endswith("/amd64") and not env.get("KIND_DOWNLOAD_URL"):
            raise BackendError(
                f"KIND_VERSION asks pytest-kind to download kind, but it downloads the amd64 "
                f"build only, which does not run on this {platform} machine: install kind "
                f"{minimum} or newer from {kind_download_url(minimum, platform)} instead, or "
                "set KIND_DOWNLOAD_URL to that address"
            )
    if kubectl is None:
        raise BackendError(
            "the kind backend needs `kubectl` on PATH "
            "(https://kubernetes.io/docs/tasks/tools/#kubectl) or --canary-kubectl-bin=PATH"
        )
    return Tools(kind=kind, kubectl=kubectl)


def output_tail(stdout: str | bytes | None, stderr: str | bytes | None, lines: int = 15) -> str:
    """The last ``lines`` lines a command printed, stderr first (its complaint), then stdout.
    ``subprocess`` hands partial output of a timed-out command over as bytes."""

    def text(value: str | bytes | None) -> str:
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return value or ""

    printed = (text(stderr).strip() + "\n" + text(stdout).strip()).strip()
    return "\n".join(printed.splitlines()[-lines:])


def run_tool(args: Sequence[str], *, timeout: float, stdin: str | None = None) -> str:
    """Run a command; its stdout, or a BackendError with the tail of its output -- also
    when it overran ``timeout`` and was stopped (what it printed until then says where it
    hung). Ctrl-C stops the command too (``subprocess.run`` kills it) and propagates."""
    try:
        done = subprocess.run(
            list(args), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        tail = output_tail(exc.stdout, exc.stderr)
        raise BackendError(
            f"{' '.join(args)} did not finish within {timeout:.0f}s and was stopped"
            + (f"; its output (last lines):\n{tail}" if tail else " (it printed nothing)")
        ) from exc
    except OSError as exc:
        raise BackendError(f"cannot run {args[0]}: {exc}") from exc
    if done.returncode != 0:
        tail = output_tail(done.stdout, done.stderr)
        raise BackendError(f"{' '.join(args)} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


def parse_kind_version(output: str) -> tuple[int, int, int] | None:
    """The version ``kind version`` prints (``kind v0.31.0 go1.25.5 linux/amd64``; kind
    pkg/cmd/kind/version/version.go ``DisplayVersion``), None when it prints none."""
    found = re.search(r"\bv(\d+)\.(\d+)\.(\d+)", output)
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2)), int(found.group(3))


def check_kind_version(
    kind: str, minimum: str, *, platform: str | None = None, timeout: float = 30.0
) -> str:
    """Refuse a kind older than ``minimum``; returns the version it printed.

    Raises:
        BackendError: naming the version found, the minimum and where to get it for this
            machine's OS and architecture.
    """
    output = run_tool([kind, "version"], timeout=timeout).strip()
    found = parse_kind_version(output)
    wanted = parse_kind_version(minimum)
    assert wanted is not None, minimum
    if found is None:
        raise BackendError(f"`{kind} version` printed no version: {output[:200]!r}")
    if found < wanted:
        shown = "v" + ".".join(map(str, found))
        raise BackendError(
            f"kind {shown} ({kind}) is older than {minimum}, the kind release the pinned node "
            f"image is built for: install kind {minimum} or newer ({KIND_INSTALL}); for this "
            f"machine ({platform or host_platform()}): {kind_download_url(minimum, platform)}"
        )
    return output
