"""The harness's contracts a user relies on, beyond the happy path."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Iterator

import pytest

from pytest_canary import CanaryConfigError, Harness
from pytest_canary import harness as harness_module
from pytest_canary.backends.local import LocalBackend
from pytest_canary.stats import routed_requests
from pytest_canary.traffic import Entry, Sample, Sampler


@pytest.fixture
def canary() -> Iterator[Harness]:
    backend = LocalBackend(seed=5)
    try:
        with Harness(backend.environment("harness")) as harness:
            yield harness
    finally:
        backend.close()


def test_a_failed_zero_downtime_promotion_can_be_rolled_back(canary: Harness) -> None:
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50, canary_error_rate=0.3)
    with pytest.raises(AssertionError, match=r"requests failed during the promoted switch"):
        rel.promote(check_errors=True)
    rel.rollback()
    rel.expect_routed("1.0")


def test_check_errors_stops_at_the_first_failure_instead_of_filling_its_floor(
    canary: Harness,
) -> None:
    """Once a request failed the verdict is FAIL: the traffic stops there rather than going
    on to the 688 requests a PASS needs."""
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50, canary_error_rate=1.0)
    with pytest.raises(AssertionError, match="requests failed during") as info:
        rel.promote(check_errors=True)
    verdict = info.value.verdict  # type: ignore[attr-defined]
    assert verdict.decision == "FAIL"
    assert verdict.n + sum(verdict.errors.values()) < routed_requests(0.01, 0.001)


def test_check_errors_without_its_floor_is_inconclusive_not_a_pass(
    canary: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry that cannot carry the requests the guarantee needs within the wait (here: a
    floor of 69,075 requests and no wait) gets INCONCLUSIVE naming the numbers, never a PASS
    that claims the guarantee."""
    monkeypatch.setattr(harness_module, "ZERO_DOWNTIME_RATE", 0.0001)
    monkeypatch.setattr(harness_module, "ZERO_DOWNTIME_WAIT", 0.0)
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50)
    with pytest.raises(AssertionError, match="INCONCLUSIVE") as info:
        rel.promote(check_errors=True)
    message = str(info.value)
    assert "a failure rate of 0.01% with probability 0.999 needs 69075, and the entry " in message
    assert "answered only" in message
    assert info.value.verdict.decision == "INCONCLUSIVE"  # type: ignore[attr-defined]


def test_a_change_that_raises_stops_the_check_errors_traffic_at_once(
    canary: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change's own error propagates; the background traffic is stopped without
    waiting for the floor (which used to add up to a minute before the error)."""
    stops: list[dict[str, object]] = []
    original = harness_module.BackgroundTraffic.stop

    def spy(self: harness_module.BackgroundTraffic, **kwargs: object) -> Sample:
        stops.append(kwargs)
        return original(self, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(harness_module.BackgroundTraffic, "stop", spy)
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50)

    def boom() -> None:
        raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError, match="the change failed"):
        rel._zero_downtime(boom, during="a change", request="test")
    assert stops == [{}]


def test_after_promote_the_stable_version_is_the_promoted_one(canary: Harness) -> None:
    """As Argo Rollouts and Flagger report it: the stable track runs the promoted version;
    the version before the release stays available, and a rollback returns to it."""
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=20)
    assert (rel.stable_version, rel.canary_version, rel.previous_version) == ("1.0", "2.0", "1.0")
    rel.promote()
    assert (rel.stable_version, rel.canary_version, rel.previous_version) == ("2.0", "2.0", "1.0")
    rel.expect_routed(rel.stable_version)
    rel.rollback()
    assert (rel.stable_version, rel.previous_version) == ("1.0", "1.0")
    rel.expect_routed(rel.stable_version)


def test_zero_downtime_traffic_uses_the_release_path(canary: Harness) -> None:
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50, path="/api")
    verdict = rel.promote(check_errors=True)
    assert verdict is not None and verdict.passed and verdict.n > 0


@pytest.mark.parametrize("value", [10**12, True, 0, "many"])
def test_the_request_budget_is_bounded_before_any_request(canary: Harness, value: object) -> None:
    """A budget of 10**12 requests ran for as long as the test could: it has a bound, checked
    by the same resolver as the command line's (concurrency and timeout: tests/test_plugin.py)."""
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50)
    allowed = r"max_requests .* from argument max_requests=: must be an integer from 1 to 1,000,000"
    with pytest.raises(CanaryConfigError, match=allowed):
        rel.expect_split(0.5, max_requests=value)  # type: ignore[arg-type]
    with pytest.raises(CanaryConfigError, match=allowed):
        rel.expect_healthy(max_requests=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [-0.1, 1, 2, "0.1", True])
def test_max_error_rate_is_validated_before_any_request(canary: Harness, rate: object) -> None:
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=20)
    with pytest.raises(CanaryConfigError, match=r"max_error_rate=.*: must be a fraction from 0"):
        rel.expect_split(0.2, max_error_rate=rate)  # type: ignore[arg-type]
    with pytest.raises(CanaryConfigError, match=r"max_error_rate=.*: must be a fraction from 0"):
        rel.expect_routed("1.0", max_error_rate=rate)  # type: ignore[arg-type]


def test_share_mapping_values_must_be_numbers(canary: Harness) -> None:
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=20)
    with pytest.raises(
        CanaryConfigError, match=r"share\['2.0'\]='x': must be a number from 0 to 1"
    ):
        rel.expect_split({"2.0": "x"})  # type: ignore[dict-item]


def test_expect_routed_collects_n_answers_when_errors_are_allowed(canary: Harness) -> None:
    """With failed requests allowed, the leak bound still needs n classified answers."""
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", canary_error_rate=0.2)
    verdict = rel.expect_routed("2.0", headers={"X-Canary": "always"}, max_error_rate=0.5)
    assert verdict.counts["2.0"] >= routed_requests(0.02, 0.001)
    assert sum(verdict.errors.values()) > 0


def test_split_budget_counts_failed_requests(canary: Harness) -> None:
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50, canary_error_rate=0.5)
    with pytest.raises(AssertionError, match=r"budget max_requests=300 ran out") as info:
        rel.expect_split(0.5, max_requests=300, max_error_rate=0.9)
    assert info.value.verdict.requests <= 300 + 64  # type: ignore[attr-defined]


def test_a_truncated_answer_is_an_error_not_a_crash() -> None:
    """A pod killed mid-response cuts the body short: counted as an error."""
    loop = asyncio.new_event_loop()

    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX-App-Version: 1.0\r\nContent-Length: 100\r\n\r\nshort")
        await writer.drain()
        writer.close()

    server = loop.run_until_complete(asyncio.start_server(truncated, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        with Sampler(Entry(f"http://127.0.0.1:{port}"), concurrency=2) as sampler:
            sample = sampler.sample(6)
        assert sample.classified == 0
        assert sum(sample.errors.values()) == 6
        assert all("ClientPayloadError" in k or "connection" in k for k in sample.errors), sample
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


# ------------------------------------------------------------------------------------------
# expect_healthy and what it relies on
# ------------------------------------------------------------------------------------------


def test_expect_routed_counts_a_failed_answer_of_another_version_as_a_leak(
    canary: Harness,
) -> None:
    """Every canary answer fails (HTTP 500 with X-App-Version: 2.0). With failed requests
    allowed, expect_routed("1.0") used to pass on the stable's answers alone; a 500 that names
    2.0 still went to 2.0: a leak."""
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50, canary_error_rate=1.0)
    with pytest.raises(AssertionError, match=r"responses from 2\.0 where only 1\.0 was") as info:
        rel.expect_routed("1.0", max_error_rate=0.9)
    assert "failed answers included: 2.0 x" in str(info.value)


def test_expect_healthy_stops_when_one_version_gets_no_traffic(canary: Harness) -> None:
    """Headers that force the canary leave nothing to compare: INCONCLUSIVE after the
    688 requests that would have shown a 1% share, not after the whole budget."""
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50)
    with pytest.raises(AssertionError, match="the stable answered none of 688 requests") as info:
        rel.expect_healthy(headers={"X-Canary": "always"})
    verdict = info.value.verdict  # type: ignore[attr-defined]
    assert verdict.decision == "INCONCLUSIVE" and verdict.requests == 688
    assert verdict.request == "X-Canary: always"


def test_expect_healthy_budget_says_what_would_decide(canary: Harness) -> None:
    """300 requests give the canary ~150 answers, too few for an upper bound of its p95
    (243): the message names that need, and offers no margin as a PASS. (How many requests
    would decide depends on the latencies this machine measures: on a busy one the observed
    ratio can sit on the margin, and then no multiple decides.)"""
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50)
    with pytest.raises(AssertionError, match="INCONCLUSIVE") as info:
        rel.expect_healthy(max_requests=300)
    message = str(info.value)
    assert "undecided after 300 requests (max_requests=300)" in message
    assert re.search(
        r"(about|not even) \d+ requests would (PASS|decide) at the observed rates", message
    )
    assert "an upper bound of the canary's p95 needs 243 answers" in message
    assert "would PASS with these requests" not in message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_error_increase": 2}, r"max_error_increase=2: must be in \(0, 1\)"),
        ({"quantile": 95}, r"quantile=95: must be in \(0, 1\)"),
        ({"versions": ("2.0",)}, r"versions=\('2\.0',\): must be a pair"),
        ({"versions": ("3.0", "1.0")}, "but 3.0 does not answer now"),
    ],
)
def test_expect_healthy_arguments_are_checked_before_any_request(
    canary: Harness, kwargs: dict[str, object], message: str
) -> None:
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50)
    with pytest.raises(CanaryConfigError, match=message):
        rel.expect_healthy(**kwargs)  # type: ignore[arg-type]


def test_expect_healthy_needs_both_versions_answering(canary: Harness) -> None:
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50)
    rel.promote()
    with pytest.raises(CanaryConfigError, match="compare before promote"):
        rel.expect_healthy()
    with pytest.raises(CanaryConfigError, match="already promoted"):
        rel.promote(check_health=True)


@pytest.mark.parametrize(
    ("deploy", "message"),
    [
        ({"strategy": "bluegreen"}, "on bluegreen: green gets no traffic before the switch"),
        ({"strategy": "nginx", "weight": 0}, "with weight=0 on nginx: the canary gets no traffic"),
    ],
    ids=["bluegreen", "nginx-weight-0"],
)
def test_promote_check_health_refuses_up_front_where_the_canary_gets_no_traffic(
    canary: Harness, deploy: dict[str, object], message: str
) -> None:
    """No requests sent, nothing promoted: the error says what to do instead."""
    rel = canary.deploy(stable="1.0", canary="2.0", **deploy)  # type: ignore[arg-type]
    with pytest.raises(CanaryConfigError, match=message):
        rel.promote(check_health=True)
    assert rel.phase.value == "canary"


def test_health_latency_includes_the_round_trip_of_5xx_answers(canary: Harness) -> None:
    """README, "What the latency is": a 5xx that names its version counts with its latency.
    Every canary answer is a 500 sent 100 ms late: the canary's p95 is at least 100 ms."""
    rel = canary.deploy(
        "nginx", stable="1.0", canary="2.0", weight=50, canary_error_rate=1.0, canary_latency_ms=100
    )
    with pytest.raises(AssertionError, match="health expectation FAIL") as info:
        rel.expect_healthy()
    verdict = info.value.verdict  # type: ignore[attr-defined]
    assert verdict.version_errors["2.0"] == verdict.version_requests["2.0"] > 0
    assert verdict.latency_quantiles_ms["2.0"] >= 100.0


def test_every_call_that_sends_traffic_checks_headers_and_cookies(canary: Harness) -> None:
    """headers="x" used to end in a ValueError deep in the sampler ("dictionary update
    sequence"); every public call now refuses it with the same CanaryConfigError."""
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50)
    with Sampler(rel.entry) as sampler:
        calls: list[Callable[..., object]] = [
            lambda **kw: rel.sample(10, **kw),
            lambda **kw: rel.expect_split(0.5, **kw),
            lambda **kw: rel.expect_routed("1.0", **kw),
            lambda **kw: rel.expect_healthy(**kw),
            lambda **kw: sampler.sample(10, **kw),
        ]
        for call in calls:
            with pytest.raises(CanaryConfigError, match=r"headers='x': must be a mapping"):
                call(headers="x")
            with pytest.raises(CanaryConfigError, match=r"cookies\['a'\]=1: must be a mapping"):
                call(cookies={"a": 1})


def test_failed_requests_that_name_no_version_go_apart_with_their_reasons() -> None:
    """A batch with a timeout and a reset (no version) besides answers of both versions: each
    version keeps its own answers and 5xx; the two failures go apart, each taking the request
    timeout, with their reasons (HealthTest counts them against the canary for PASS only)."""
    sample = Sample()
    sample.counts.update({"2.0": 3, "1.0": 4})
    sample.errors.update({"HTTP 500": 2})
    sample.failed("timeout")
    sample.failed("connection closed by server")
    sample.version_errors.update({"1.0": 1, "2.0": 1})
    sample.version_latencies.update({"2.0": [0.01] * 4, "1.0": [0.02] * 5})
    batch = harness_module._health_observations(sample, "2.0", "1.0", 10.0)
    canary_obs, stable_obs = batch["canary"], batch["stable"]
    assert (canary_obs.requests, canary_obs.errors) == (3 + 1, 1)
    assert list(canary_obs.latencies) == [0.01] * 4
    assert (stable_obs.requests, stable_obs.errors) == (4 + 1, 1)
    assert list(stable_obs.latencies) == [0.02] * 5
    assert batch["unattributed"] == [10.0, 10.0]
    assert batch["reasons"] == {"timeout": 1, "connection closed by server": 1}
    assert sample.unattributed_errors == 2


@pytest.mark.parametrize(
    "deploy",
    [
        {"strategy": "replicas", "stable_replicas": 1, "canary_replicas": 1},
        {"strategy": "istio", "weight": 50},
        {"strategy": "gateway", "weight": 50},
        {"strategy": "rolling"},
    ],
    ids=["replicas", "istio", "gateway", "rolling"],
)
def test_expect_healthy_attributes_errors_on_every_strategy(
    canary: Harness, deploy: dict[str, object]
) -> None:
    """A canary failing a fifth of its requests fails the comparison whatever routes the
    traffic (kube-proxy per connection, Envoy, Gateway API, a paused rolling update): its
    500s name it, the stable's answers do not fail."""
    rel = canary.deploy(stable="1.0", canary="2.0", canary_error_rate=0.2, **deploy)  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="errors: the canary fails at least") as info:
        rel.expect_healthy()
    verdict = info.value.verdict  # type: ignore[attr-defined]
    assert verdict.version_errors["1.0"] == 0 < verdict.version_errors["2.0"]
    assert verdict.unattributed_errors == 0
