"""Who owns a run's leftovers, and whether that process still runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pytest_canary.backends import owner as owner_module
from pytest_canary.backends.owner import Owner, process_start_time


def test_this_process_runs_and_a_gone_one_does_not() -> None:
    me = Owner.this_process()
    assert me.pid == os.getpid() and me.running_here() is True
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start_time(child.pid) or ""
    child.wait()
    assert Owner(me.host, child.pid, start).running_here() is False


def test_a_recycled_pid_is_another_process() -> None:
    me = Owner.this_process()
    assert Owner(me.host, me.pid, "1").running_here() is False


def test_another_hosts_process_cannot_be_told_from_here() -> None:
    assert Owner("some-ci-runner", 1, "1").running_here() is None


def test_without_proc_a_running_pid_counts_with_an_unknown_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """macOS has no /proc: a pid that answers signal 0 runs (start time unknown, ``""``)."""
    monkeypatch.setattr(owner_module.sys, "platform", "darwin")
    monkeypatch.setattr(owner_module.Path, "read_text", _no_proc)
    assert process_start_time(os.getpid()) == ""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_start_time(child.pid) is None
    me = Owner(Owner.this_process().host, os.getpid(), "")
    assert me.running_here() is True


def _no_proc(self: object, *args: object, **kwargs: object) -> str:
    raise FileNotFoundError("no /proc here")
