"""Who owns a run's leftovers, and whether that process still runs."""

from __future__ import annotations

import dataclasses
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
    assert dataclasses.replace(me, pid=child.pid, pid_start=start).running_here() is False


def test_a_recycled_pid_is_another_process() -> None:
    me = Owner.this_process()
    assert dataclasses.replace(me, pid_start="1").running_here() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="boot id and pid namespaces")
def test_the_same_host_name_on_another_machine_or_container_cannot_be_told_from_here() -> None:
    """Two machines may share a host name, and a container started with --network=host
    shares the host's name but not its pids: a pid that does not run here says nothing."""
    me = Owner.this_process()
    assert me.boot_id and me.pid_ns
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    gone_here = dataclasses.replace(me, pid=child.pid, pid_start="1")
    assert gone_here.running_here() is False
    other_container = dataclasses.replace(gone_here, pid_ns="4026532999")
    assert other_container.running_here() is None
    other_machine = dataclasses.replace(gone_here, boot_id="0d3e0c4e-6b2a-4f7e-9d51-2f0c7a1b9e11")
    assert other_machine.running_here() is None
    assert dataclasses.replace(gone_here, boot_id="", pid_ns="").running_here() is None


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
    me = dataclasses.replace(Owner.this_process(), pid_start="")
    assert (me.boot_id, me.pid_ns) == ("", "")  # nothing to tell machines apart: none known
    assert me.running_here() is True


def _no_proc(self: object, *args: object, **kwargs: object) -> str:
    raise FileNotFoundError("no /proc here")
