"""Inter-process locks end their wait at a deadline, naming the lock file: a stuck session
(a build, a download, a ``kind load``) never keeps another waiting forever."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pytest_canary import images
from pytest_canary.backends import addons
from pytest_canary.errors import BackendError
from pytest_canary.locks import LockTimeout, file_lock


@contextmanager
def held_elsewhere(lock: Path) -> Iterator[None]:
    """``lock`` held by another process until the block ends (it says when it holds it)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import filelock, sys\n"
            f"with filelock.FileLock({str(lock)!r}):\n"
            "    print('held', flush=True)\n"
            "    sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline() == "held\n"
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()


def test_a_busy_lock_is_waited_for_with_a_line_then_given_up_naming_its_file(
    tmp_path: Path,
) -> None:
    lock = tmp_path / "x.lock"
    lines: list[str] = []
    with (
        held_elsewhere(lock),
        pytest.raises(LockTimeout) as caught,
        file_lock(lock, timeout=0.2, what="the thing", progress=lines.append),
    ):
        pass
    assert str(caught.value).startswith(f"the thing: another session kept the lock {lock} for 0s")
    assert lines == [f"waiting for the thing: another session holds {lock}"]
    with file_lock(lock, timeout=5, what="the thing"):  # free again
        pass


def test_a_download_waits_for_another_sessions_download_with_a_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(addons, "DOWNLOAD_LOCK_TIMEOUT", 0.2)
    pin = addons.Pin("ingress-nginx", "controller-v1.15.1", "https://example.invalid/d", "d.yaml")
    downloads = addons.Downloads(tmp_path, get=lambda url, **_: None)
    lock = tmp_path / "downloads" / "d.yaml.lock"
    with held_elsewhere(lock), pytest.raises(BackendError, match=f"kept the lock {lock}"):
        downloads.fetch(pin, "linux/amd64")


def test_a_build_waits_for_another_sessions_build_of_the_tag_with_a_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(images, "BUILD_LOCK_TIMEOUT", 0.2)
    tag = f"pytest-canary/sample-go:lock-test-{os.getpid()}"
    lock = (
        Path(tempfile.gettempdir())
        / f"pytest-canary-build-pytest-canary_sample-go_lock-test-{os.getpid()}.lock"
    )
    with (
        held_elsewhere(lock),
        pytest.raises(images.ImageBuildError) as caught,
        images._build_lock(tag),
    ):
        pass
    assert f"building {tag} failed: the build of {tag}: another session kept the lock" in str(
        caught.value
    )
    lock.unlink(missing_ok=True)
