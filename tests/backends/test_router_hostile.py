"""Hostile clients and misbehaving pods against the local routers: every bad answer is an
error the sampler counts (the status the real proxy would answer), never a router crash,
and a slow route decision never stalls other requests."""

from __future__ import annotations

import collections
import contextlib
import http.client
import logging
import random
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

from pytest_canary.backends.local.router import (
    ROUTER_LOG,
    AccessRecord,
    ConnectionRouter,
    Endpoint,
    HttpRouter,
    InFlight,
    LoopThread,
    RouterErrors,
)
from pytest_canary.dataplane.request import Destination, RoutedRequest
from pytest_canary.traffic import MAX_BODY_BYTES, Entry, Sampler

OK = b"HTTP/1.1 200 OK\r\nX-App-Version: 1.0\r\nContent-Length: 3\r\n\r\nok\n"
# What a misbehaving pod answers, by request path.
ANSWERS: dict[str, bytes] = {
    "garbage": b"\x00\xff\xfe not http at all\r\n\r\n",
    "bad-status-line": b"HTTP/1.1 2x0 OK\r\nX-App-Version: 1.0\r\nContent-Length: 2\r\n\r\nok",
    "header-without-colon": b"HTTP/1.1 200 OK\r\nX-App-Version 1.0\r\nContent-Length: 2\r\n\r\nok",
    "100kb-header": b"HTTP/1.1 200 OK\r\nX-App-Version: 1.0\r\nX-Big: "
    + b"a" * 100_000
    + b"\r\nContent-Length: 2\r\n\r\nok",
    "truncated-body": b"HTTP/1.1 200 OK\r\nX-App-Version: 1.0\r\nContent-Length: 100\r\n\r\nshort",
    "bad-chunking": b"HTTP/1.1 200 OK\r\nX-App-Version: 1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"zz\r\nnot a chunk\r\n0\r\n\r\n",
    "http-0.9": b"1.0\n",
    "two-versions": b"HTTP/1.1 200 OK\r\nX-App-Version: 1.0\r\nX-App-Version: 2.0\r\n"
    b"Content-Length: 2\r\n\r\nok",
    "500-headers": b"HTTP/1.1 200 OK\r\nX-App-Version: 1.0\r\n"
    + b"".join(b"X-H%d: v\r\n" % i for i in range(500))
    + b"Content-Length: 2\r\n\r\nok",
    "101-to-a-get": b"HTTP/1.1 101 Switching Protocols\r\nX-App-Version: 1.0\r\n"
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    "status-0": b"HTTP/1.1 000 Zero\r\nX-App-Version: 1.0\r\nContent-Length: 2\r\n\r\nok",
    "20mb-body": b"HTTP/1.1 200 OK\r\nX-App-Version: 1.0\r\nContent-Length: 20971520\r\n\r\n"
    + b"x" * 20_971_520,
}


class HostilePod(socketserver.ThreadingTCPServer):
    """A pod on 127.0.0.1 that answers each request path with the bytes of ``ANSWERS``
    (``ok`` for a well-formed answer) and closes the connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HostileHandler)
        self.port = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


class _HostileHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            data += chunk
        path = data.split(b" ", 2)[1].decode().lstrip("/") if b" " in data else ""
        try:
            self.request.sendall(ANSWERS.get(path, OK))
            self.request.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the proxy gave up on us first


class OneEndpoint:
    """A routing view that sends every request to one endpoint."""

    def __init__(self, port: int, decide: Callable[[RoutedRequest], None] | None = None) -> None:
        self.port = port
        self.decide = decide

    def route(self, kind: str, request: RoutedRequest, rng: random.Random) -> Destination:
        if self.decide is not None:
            self.decide(request)
        return Destination("pod", 80, reason="the only endpoint")

    def endpoints(self, destination: Destination) -> list[Endpoint]:
        return [Endpoint("pod-0", "127.0.0.1", self.port, ())]


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture(scope="module")
def pod() -> Iterator[HostilePod]:
    server = HostilePod()
    try:
        yield server
    finally:
        server.close()


class Router:
    """An HttpRouter of one kind, its errors and its access log."""

    def __init__(self, loop: LoopThread, kind: str, view: Any) -> None:
        self.loop = loop
        self.errors = RouterErrors()
        self.log: collections.deque[AccessRecord] = collections.deque(maxlen=200)
        self.router = HttpRouter(kind, lambda: view, random.Random(1), self.errors, self.log)
        self.port = loop.run(self.router.start())

    def close(self) -> None:
        self.loop.run(self.router.stop())


@pytest.fixture
def make_router(loop: LoopThread) -> Iterator[Callable[[str, Any], Router]]:
    made: list[Router] = []

    def make(kind: str, view: Any) -> Router:
        made.append(Router(loop, kind, view))
        return made[-1]

    try:
        yield make
    finally:
        for router in made:
            router.close()


ROUTED = {mode: 502 for mode in ANSWERS} | {"two-versions": 200}
# Envoy accepts what fits its 60 KiB / 100 headers; nginx's 4 KiB header buffer takes neither.
ENVOY_PASSES = {"two-versions"}


@pytest.mark.parametrize("kind", ["nginx", "istio:kubeapp-gateway", "gateway:kubeapp-gateway"])
@pytest.mark.parametrize("mode", sorted(ANSWERS))
def test_misbehaving_pod_is_a_counted_error_through_the_router(
    kind: str, mode: str, pod: HostilePod, make_router: Callable[[str, Any], Router]
) -> None:
    router = make_router(kind, OneEndpoint(pod.port))
    with Sampler(Entry(f"http://127.0.0.1:{router.port}"), concurrency=2, timeout=5) as sampler:
        sample = sampler.sample(3, path=f"/{mode}")
        healthy = sampler.sample(2)  # the router still serves well-formed answers
    router.errors.raise_first()  # the router itself met no error
    assert sample.error_count == 3 and not sample.counts, sample
    assert dict(healthy.counts) == {"1.0": 2}
    expected = ROUTED[mode] if kind == "nginx" or mode not in ENVOY_PASSES else 200
    statuses = {record.status for record in router.log if record.path == f"/{mode}"}
    assert statuses == {expected}, list(router.log)
    if expected == 502:
        assert set(sample.errors) == {"HTTP 502"}
    else:
        assert set(sample.errors) == {"HTTP 200: two different X-App-Version headers"}


@pytest.mark.parametrize("mode", sorted(ANSWERS))
def test_misbehaving_pod_is_a_counted_error_through_kube_proxy(
    mode: str, pod: HostilePod, loop: LoopThread
) -> None:
    errors = RouterErrors()
    log: collections.deque[AccessRecord] = collections.deque(maxlen=50)
    endpoint = Endpoint("pod-0", "127.0.0.1", pod.port, ())
    router = ConnectionRouter("svc", lambda: [endpoint], random.Random(1), errors, log)
    port = loop.run(router.start())
    try:
        entry = Entry(f"http://127.0.0.1:{port}", per_connection=True)
        with Sampler(entry, concurrency=2, timeout=5) as sampler:
            sample = sampler.sample(3, path=f"/{mode}")
    finally:
        loop.run(router.stop())
    errors.raise_first()
    assert sample.error_count == 3 and not sample.counts, sample


def test_answer_body_over_the_sampler_limit_is_an_error(
    pod: HostilePod, make_router: Callable[[str, Any], Router]
) -> None:
    # Envoy streams any body; the sampler reads at most MAX_BODY_BYTES of it.
    assert MAX_BODY_BYTES < 20_971_520
    errors = RouterErrors()
    entry = Entry(f"http://127.0.0.1:{pod.port}")
    with Sampler(entry, concurrency=1, timeout=5) as sampler:
        sample = sampler.sample(1, path="/20mb-body")
    errors.raise_first()
    assert sample.errors == {f"HTTP 200 with a body over {MAX_BODY_BYTES} bytes": 1}


def _post(port: int, size: int, *, chunked: bool = False) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        if chunked:
            conn.putrequest("POST", "/")
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            piece = b"x" * 65536
            try:
                for _ in range(size // len(piece)):
                    conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                conn.send(b"0\r\n\r\n")
            except OSError:
                pass  # the proxy answered and closed before reading it all
        else:
            with contextlib.suppress(OSError):  # the proxy answered before reading it all
                conn.request("POST", "/", body=b"x" * size)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_nginx_answers_a_body_over_1mib_with_413_and_keeps_serving(
    chunked: bool, pod: HostilePod, make_router: Callable[[str, Any], Router]
) -> None:
    """ingress-nginx proxy-body-size "1m" -> client_max_body_size: 413 by nginx itself."""
    router = make_router("nginx", OneEndpoint(pod.port))
    status, _ = _post(router.port, 2 * 1024 * 1024, chunked=chunked)
    assert status == 413
    assert _post(router.port, 1024 * 1024)[0] == 200  # exactly 1m is allowed
    with Sampler(Entry(f"http://127.0.0.1:{router.port}"), concurrency=4, timeout=5) as s:
        sample = s.sample(20)
    router.errors.raise_first()
    assert dict(sample.counts) == {"1.0": 20} and not sample.errors
    assert any(r.status == 413 and "too large body" in r.reason for r in router.log)


@pytest.fixture
def counting_pod(loop: LoopThread) -> Iterator[int]:
    """A pod that answers with the size of the body it received."""

    async def handle(request: web.BaseRequest) -> web.Response:
        size = 0
        while chunk := await request.content.readany():
            size += len(chunk)
        return web.Response(text=str(size), headers={"X-App-Version": "1.0"})

    async def start() -> tuple[web.Server, Any]:
        server = web.Server(handle)
        return server, await loop.loop.create_server(server, "127.0.0.1", 0)

    server, listening = loop.run(start())
    try:
        yield listening.sockets[0].getsockname()[1]
    finally:
        listening.close()
        loop.run(server.shutdown(timeout=1))


def test_envoy_streams_a_large_body_to_the_pod(
    counting_pod: int, make_router: Callable[[str, Any], Router]
) -> None:
    """Envoy has no default body limit: a 3 MiB POST reaches the pod, streamed."""
    router = make_router("istio:kubeapp-gateway", OneEndpoint(counting_pod))
    status, body = _post(router.port, 3 * 1024 * 1024)
    router.errors.raise_first()
    assert (status, body) == (200, str(3 * 1024 * 1024).encode())


def test_slow_route_decision_never_stalls_other_requests(
    pod: HostilePod, make_router: Callable[[str, Any], Router]
) -> None:
    """A decision that does not return (a regex at its limit) holds one decision thread,
    never the loop: 40 other requests are answered while it is still in flight."""
    release = threading.Event()
    entered = threading.Event()

    def decide(request: RoutedRequest) -> None:
        if "x-slow" in request.headers:
            entered.set()
            assert release.wait(30)

    router = make_router("nginx", OneEndpoint(pod.port, decide))
    slow_answer: list[int] = []

    def slow_request() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=30)
        try:
            conn.request("GET", "/", headers={"X-Slow": "1"})
            slow_answer.append(conn.getresponse().status)
        finally:
            conn.close()

    slow = threading.Thread(target=slow_request)
    slow.start()
    try:
        assert entered.wait(10)
        with Sampler(Entry(f"http://127.0.0.1:{router.port}"), concurrency=8, timeout=5) as s:
            sample = s.sample(40)
        assert dict(sample.counts) == {"1.0": 40}
        assert slow.is_alive() and not slow_answer  # still deciding meanwhile
    finally:
        release.set()
        slow.join(30)
    assert slow_answer == [200]
    router.errors.raise_first()


def test_a_header_pattern_at_pcres_limit_goes_to_main_logged_while_traffic_flows() -> None:
    """ingress-nginx: a canary-by-header-pattern match that hits PCRE's backtracking limit is
    logged and routed to the main backend (balancer.lua); traffic keeps flowing meanwhile,
    and the diagnostics' data-plane log shows nginx's error line."""
    from pytest_canary import Harness
    from pytest_canary.backends.local import LocalBackend

    backend = LocalBackend(seed=3)
    try:
        with Harness(backend.environment("pcre-limit")) as canary:
            rel = canary.deploy(
                "nginx", stable="1.0", canary="2.0", header="Region", header_pattern="(a|aa)+$"
            )
            port = int(rel.url.rsplit(":", 1)[1])
            hostile: list[tuple[int, str | None]] = []

            def send_hostile() -> None:
                for _ in range(4):
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    try:
                        conn.request(
                            "GET", "/", headers={"Host": "foo.bar", "Region": "a" * 2000 + "!"}
                        )
                        answer = conn.getresponse()
                        answer.read()
                        hostile.append((answer.status, answer.getheader("X-App-Version")))
                    finally:
                        conn.close()

            sender = threading.Thread(target=send_hostile)
            sender.start()
            normal = rel.sample(60, headers={"Region": "aa"})
            sender.join(30)
            assert dict(normal.counts) == {"2.0": 60}  # the pattern still matches normally
            assert hostile == [(200, "1.0")] * 4  # errored match: the main backend
            log = canary.environment.diagnostics().sections["data-plane log"]
            assert "error when matching canary-by-header-pattern: '(a|aa)+$'" in log
            assert "pcre_exec() failed: -8" in log
    finally:
        backend.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nHeader without colon\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        b"G@T / HTTP/1.1\r\n\r\n",
    ],
    ids=["header-without-colon", "tls-handshake", "bad-method"],
)
def test_a_malformed_request_is_answered_400_without_a_logged_traceback(
    request_bytes: bytes,
    pod: HostilePod,
    make_router: Callable[[str, Any], Router],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Someone else's malformed request used to log an ERROR with the HTTP parser's
    traceback, which pytest shows under "Captured log" of whatever test failed next. It is
    answered 400 and, with DEBUG on for the router's client log, noted in one line."""
    router = make_router("nginx", OneEndpoint(pod.port))
    caplog.set_level(logging.DEBUG, logger=ROUTER_LOG.name)
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as client:
        client.sendall(request_bytes)
        answer = client.recv(4096)
    assert answer.startswith(b"HTTP/1.0 400 Bad Request"), answer
    with Sampler(Entry(f"http://127.0.0.1:{router.port}"), concurrency=1, timeout=5) as sampler:
        assert dict(sampler.sample(2).counts) == {"1.0": 2}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    (noted,) = [r for r in caplog.records if r.name == ROUTER_LOG.name]
    assert "answered 400" in noted.getMessage() and "\n" not in noted.getMessage()
    assert noted.exc_info is None


def test_a_client_gone_before_its_body_is_complete_is_a_499_without_a_logged_error(
    pod: HostilePod,
    make_router: Callable[[str, Any], Router],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A POST announcing 10 bytes, sending 2 and closing: the router used to let aiohttp log
    an ERROR with a ConnectionResetError traceback. nginx logs such a request 499 and sends
    nothing upstream; so does the router, and its traffic goes on."""
    router = make_router("nginx", OneEndpoint(pod.port))
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as client:
        client.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        client.shutdown(socket.SHUT_WR)
        client.recv(4096)  # the router closes its side (nothing, or the 499 it could not send)
    with Sampler(Entry(f"http://127.0.0.1:{router.port}"), concurrency=1, timeout=5) as sampler:
        assert dict(sampler.sample(2).counts) == {"1.0": 2}
    router.errors.raise_first()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    closed = [record for record in router.log if record.status == 499]
    assert len(closed) == 1 and "before its request body was complete" in closed[0].reason


def test_a_request_routed_on_a_snapshot_is_in_flight_until_its_pod_answers(
    pod: HostilePod, make_router: Callable[[str, Any], Router]
) -> None:
    """What a stopping pod waits for: a request the router has routed on an older snapshot
    (its decision still running, then on its way to pod-0) holds pod-0 until the pod has
    answered; a request on the current snapshot, or to another pod, does not."""
    deciding, release = threading.Event(), threading.Event()

    def slow(request: RoutedRequest) -> None:
        deciding.set()
        release.wait(5)

    router = make_router("nginx", OneEndpoint(pod.port, decide=slow))
    old_view = router.router._view()
    with Sampler(Entry(f"http://127.0.0.1:{router.port}"), concurrency=1, timeout=5) as sampler:
        sending = threading.Thread(target=sampler.sample, args=(1,))
        sending.start()
        assert deciding.wait(5)
        in_flight = router.router.in_flight
        assert in_flight.holds(frozenset({"pod-0"}), current=object())
        assert not in_flight.holds(frozenset({"pod-0"}), current=old_view)
        release.set()
        sending.join(5)
    assert not in_flight.holds(frozenset({"pod-0"}), current=object())


def test_in_flight_tells_pods_apart() -> None:
    flights = InFlight()
    old, new = object(), object()
    token = flights.begin(old)
    assert flights.holds(frozenset({"a"}), new)  # not picked yet: it may go anywhere
    flights.picked(token, "b")
    assert not flights.holds(frozenset({"a"}), new) and flights.holds(frozenset({"b"}), new)
    flights.end(token)
    assert not flights.holds(frozenset({"b"}), new)
