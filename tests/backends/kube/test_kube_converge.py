"""Convergence looks stay inside their deadline, whatever the entry does."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from pytest_canary.backends.base import Entry
from pytest_canary.backends.kube.converge import Convergence, EntryProbe
from pytest_canary.backends.kube.plan import DataplanePlan, Route
from pytest_canary.errors import ConvergenceTimeout


@pytest.fixture
def black_hole() -> Iterator[str]:
    """An entry that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_a_look_at_an_entry_that_never_answers_ends_at_the_deadline(black_hole: str) -> None:
    """Each probe request may wait 5 s and a look sends 40 of them: without stopping at the
    first failure and capping each request by the time left, one look would take 200 s
    against a 2 s --canary-dataplane-timeout."""
    entry = Entry(url=black_hole, host="foo.bar", description=f"ingress-nginx at {black_hole}")
    plan = DataplanePlan(routes=(Route("default", {}, ({"app": "kubeapp"},), frozenset({"1.0"})),))
    probe = EntryProbe(entry, timeout=5.0)
    convergence = Convergence(lambda: [], timeout=2.0)
    started = time.monotonic()
    with pytest.raises(ConvergenceTimeout) as caught:
        convergence.await_plan(entry, plan, probe, [], hold_for_nginx=lambda: False)
    assert time.monotonic() - started < 30  # generous: 2 s plus a loaded machine
    assert "timeout" in caught.value.last_seen


def test_a_batch_stops_at_its_first_failed_request(black_hole: str) -> None:
    probe = EntryProbe(Entry(url=black_hole, description="x"), timeout=0.5)
    answers = probe.answers({}, 40)
    probe.close()
    assert [a.error for a in answers] == ["timeout"]
