"""The local data plane: real proxies on 127.0.0.1 that route by the data-plane models.

- :class:`HttpRouter` is an HTTP/1.1 reverse proxy (keep-alive on both sides). For every
  request it asks the environment's current routing snapshot where the request goes
  (``dataplane`` models), picks a ready endpoint of that Service and forwards the request.
- :class:`ConnectionRouter` models kube-proxy: a TCP proxy that picks a ready endpoint at
  random **per connection** and then splices bytes, so HTTP keep-alive pins a client to one pod
  exactly as it does through a real Service.

Both run on one asyncio loop in a daemon thread (:class:`LoopThread`); their errors are kept
and re-raised in the test thread by the environment. Nothing slow runs on that loop: route
decisions (which may run a header regex) run on a small thread pool, and every byte a client
or a pod sends passes a bound first (``dataplane.limits``): an oversized request body, a
malformed or oversized upstream answer get the status the real proxy answers (413, 502),
recorded in the access log and counted by the sampler as errors.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import itertools
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import aiohttp
from aiohttp import http_exceptions, web

from pytest_canary.dataplane.limits import ProxyLimits, limits_for
from pytest_canary.dataplane.request import Destination, Refusal, RoutedRequest
from pytest_canary.errors import BackendError
from pytest_canary.traffic import read_bounded

T = TypeVar("T")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)
# nginx's status for a request whose client closed the connection first (ngx_http_request.h
# NGX_HTTP_CLIENT_CLOSED_REQUEST), as its access log shows it.
CLIENT_CLOSED = 499
# ingress-nginx default proxy_next_upstream "error timeout" with proxy-next-upstream-tries 3.
UPSTREAM_TRIES = 3
# Threads that take route decisions off the loop: a slow decision (a header regex at its
# limit) holds one of them, never the loop that carries every other request.
DECISION_THREADS = 4
# Request bodies up to this size are read before forwarding (so a failed connection can be
# retried); a larger one is streamed (Envoy) or refused (ingress-nginx, 413).
BUFFERED_REQUEST_BYTES = 1024 * 1024
# Largest upstream answer body the router holds: it buffers whole answers.
MAX_ANSWER_BYTES = 8 * 1024 * 1024
# The upstream HTTP parser's own bounds, above every modelled proxy's limit (which is then
# checked on the parsed answer).
PARSER_MAX_FIELD = 64 * 1024 + 1024
PARSER_MAX_HEADERS = 200


class LoopThread:
    """An asyncio event loop running in a daemon thread, owned by one backend."""

    def __init__(self, name: str = "pytest-canary-router") -> None:
        self.loop = asyncio.new_event_loop()
        # run_in_executor(None, ...) on this loop: route decisions, bounded.
        self.decisions = concurrent.futures.ThreadPoolExecutor(
            DECISION_THREADS, thread_name_prefix=f"{name}-decision"
        )
        self.loop.set_default_executor(self.decisions)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the loop and wait for its result in the calling thread."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise BackendError(f"router operation did not finish within {timeout:.0f}s") from None

    def close(self) -> None:
        """Stop the loop and join its thread (idempotent)."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        # Decisions are bounded (regex time limits): waiting for them ends.
        self.decisions.shutdown(wait=True, cancel_futures=True)
        if not self._thread.is_alive():
            self.loop.close()


@dataclass(frozen=True)
class Endpoint:
    """A ready pod behind a Service."""

    pod: str
    host: str
    port: int
    labels: tuple[tuple[str, str], ...]


class RoutingView(Protocol):
    """What routers read for every request: an immutable snapshot of the environment."""

    def route(self, kind: str, request: RoutedRequest, rng: random.Random) -> Destination | Refusal:
        """Decide where a request goes with the data-plane model ``kind``."""

    def endpoints(self, destination: Destination) -> list[Endpoint]:
        """The ready endpoints of a destination."""


@dataclass(frozen=True)
class AccessRecord:
    """One line of the router's access log (ingress-nginx logs the same facts)."""

    at: float
    host: str | None
    path: str
    destination: str
    pod: str
    status: int
    reason: str

    def __str__(self) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.at))
        return (
            f"{stamp} {self.host or '-'} {self.path} -> [{self.destination}] {self.pod} "
            f"{self.status} ({self.reason})"
        )


class RouterErrors:
    """Errors met in the loop thread, kept for the test thread."""

    def __init__(self) -> None:
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()

    def add(self, error: BaseException) -> None:
        """Keep an unexpected error."""
        with self._lock:
            self._errors.append(error)

    def raise_first(self) -> None:
        """Raise the first kept error (once)."""
        with self._lock:
            errors, self._errors = self._errors, []
        if errors:
            raise BackendError(f"the local router failed: {errors[0]!r}") from errors[0]


class _ClientMistakes(logging.Filter):
    """aiohttp logs a malformed request from a client (a header without a colon, TLS sent to a
    plain port, a bad method) as an ERROR with its parser's traceback. For the router that is
    the client's mistake, answered 400 as nginx and Envoy answer it, and it must not fill a
    test's "Captured log" with a traceback from deep inside: it becomes one DEBUG line, logged
    only when DEBUG is on for this logger. Anything else keeps its level and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, http_exceptions.HttpProcessingError):
            return True
        words = " ".join(str(exc.message).split())[:200]  # the parser's caret drawing, flat
        record.msg = f"{record.getMessage()}: answered {exc.code}: {type(exc).__name__}: {words}"
        record.args = None
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return ROUTER_LOG.isEnabledFor(logging.DEBUG)


#: The routers' HTTP server log: what malformed requests from outside the test were answered
#: 400 (one DEBUG line each); anything else aiohttp reports keeps its level and traceback.
ROUTER_LOG = logging.getLogger("pytest_canary.router")
ROUTER_LOG.addFilter(_ClientMistakes())


class InFlight:
    """Requests a router has routed on a snapshot of the routing but not yet connected to
    their pod: what a pod about to stop must wait for. On a cluster a pod leaving the
    endpoints keeps serving while every proxy catches up (the endpoint propagation a
    ``preStop`` pause covers); here the proxies catch up with the next request, so the pod
    waits only for the requests already routed to it on the old snapshot.

    Written on the router's loop (and decision threads), read by the environment's thread;
    each operation is one dict operation, atomic under the GIL.
    """

    def __init__(self) -> None:
        self._open: dict[int, list[Any]] = {}
        self._tokens = itertools.count()

    def begin(self, view: object) -> int:
        """A request reads ``view`` (the snapshot it is routed on)."""
        token = next(self._tokens)
        self._open[token] = [view, None]
        return token

    def picked(self, token: int, pod: str) -> None:
        """The request goes to ``pod``."""
        entry = self._open.get(token)
        if entry is not None:
            entry[1] = pod

    def end(self, token: int) -> None:
        """The request is connected to its pod (or failed, or needs no pod)."""
        self._open.pop(token, None)

    def holds(self, pods: frozenset[str], current: object) -> bool:
        """Whether a request routed on a snapshot other than ``current`` is on its way to
        one of ``pods`` (or has not picked its pod yet)."""
        return any(
            view is not current and (pod is None or pod in pods)
            for view, pod in list(self._open.values())
        )


class HttpRouter:
    """An HTTP reverse proxy that routes each request with a data-plane model."""

    def __init__(
        self,
        kind: str,
        view: Callable[[], RoutingView],
        rng: random.Random,
        errors: RouterErrors,
        access_log: collections.deque[AccessRecord],
        source_labels: dict[str, str] | None = None,
        error_log: collections.deque[str] | None = None,
        in_flight: InFlight | None = None,
    ) -> None:
        self.kind = kind
        self.in_flight = in_flight if in_flight is not None else InFlight()
        self.limits: ProxyLimits = limits_for(kind)
        self._view = view
        self._rng = rng
        self._errors = errors
        self._log = access_log
        self._error_log: collections.deque[str] = (
            error_log if error_log is not None else collections.deque(maxlen=100)
        )
        self._source_labels = source_labels
        self._round_robin: dict[str, int] = collections.defaultdict(int)
        self._session: aiohttp.ClientSession | None = None
        self._server: asyncio.base_events.Server | None = None
        self._web_server: web.Server | None = None
        self.port = 0

    async def start(self) -> int:
        """Listen on a free port of 127.0.0.1 and return it."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=30, sock_connect=2),
            max_line_size=PARSER_MAX_FIELD,
            max_field_size=PARSER_MAX_FIELD,
            max_headers=PARSER_MAX_HEADERS,
        )
        self._web_server = web.Server(self._handle, access_log=None, logger=ROUTER_LOG)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._web_server, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening and close upstream connections."""
        if self._server is not None:
            self._server.close()
            if self._web_server is not None:
                await self._web_server.shutdown(timeout=2)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await self._proxy(request)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:
            self._errors.add(exc)
            return web.Response(status=502, text=f"pytest-canary router error: {exc!r}\n")

    async def _proxy(self, request: web.BaseRequest) -> web.StreamResponse:
        routed = RoutedRequest.build(
            request.headers.get("Host"), request.path, request.headers, self._source_labels
        )
        limit = self.limits.max_request_body
        if limit is not None and (request.content_length or 0) > limit:
            return self._too_large(routed, limit)
        # A decision may run a header regex: on the decision threads, never on this loop.
        loop = asyncio.get_running_loop()
        view = self._view()
        token = self.in_flight.begin(view)
        try:
            return await self._route(request, routed, view, token, loop)
        finally:
            self.in_flight.end(token)

    async def _route(
        self,
        request: web.BaseRequest,
        routed: RoutedRequest,
        view: RoutingView,
        token: int,
        loop: asyncio.AbstractEventLoop,
    ) -> web.StreamResponse:
        limit = self.limits.max_request_body
        decision, endpoints = await loop.run_in_executor(None, self._decide, routed, view)
        if isinstance(decision, Destination) and decision.log:
            self._error_log.extend(f"{self.limits.name}: {line}" for line in decision.log)
        if isinstance(decision, Refusal):
            self._record(routed, "-", "-", decision.status, decision.reason)
            return web.Response(status=decision.status, text=decision.reason + "\n")
        if not endpoints:
            reason = f"no ready endpoints for {decision}"
            self._record(routed, str(decision), "-", 503, reason)
            return web.Response(status=503, text=reason + "\n")
        try:
            body = await self._request_body(request)
        except (ConnectionResetError, aiohttp.ClientPayloadError):
            # The client went away before its whole body arrived: nginx logs 499 ("client
            # closed request") and sends nothing upstream; there is no one to answer.
            reason = "client closed the connection before its request body was complete"
            self._record(routed, str(decision), "-", CLIENT_CLOSED, reason)
            response = web.Response(status=CLIENT_CLOSED, text=reason + "\n")
            response.force_close()
            return response
        if body is None:
            assert limit is not None
            return self._too_large(routed, limit)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = request.headers.get("Host", "")
        tries = min(UPSTREAM_TRIES, len(endpoints))
        if not isinstance(body, bytes):
            # A streamed body cannot be sent twice, and its connection is not reused.
            tries, headers["Connection"] = 1, "close"
        assert self._session is not None
        last_error = ""
        for attempt in range(tries):
            endpoint = self._pick(str(decision), endpoints, attempt)
            self.in_flight.picked(token, endpoint.pod)
            url = f"http://{endpoint.host}:{endpoint.port}{request.rel_url}"
            try:
                async with self._session.request(
                    request.method, url, headers=headers, data=body or None, allow_redirects=False
                ) as upstream:
                    self.in_flight.end(token)  # the pod has answered: it may stop now
                    return await self._answer(routed, decision, endpoint, upstream)
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                # proxy_next_upstream error timeout: try the next endpoint.
                last_error = f"{type(exc).__name__}: {exc}"
            except aiohttp.ClientError as exc:
                # An answer the proxy cannot parse: no retry (nginx's default
                # proxy_next_upstream has no invalid_header), 502 to the client.
                reason = self._unparseable(exc)
                self._record(routed, str(decision), endpoint.pod, 502, reason)
                return web.Response(status=502, text=f"{reason}\n")
        self._record(routed, str(decision), "-", 502, last_error)
        return web.Response(status=502, text=f"upstream failed: {last_error}\n")

    def _decide(
        self, routed: RoutedRequest, view: RoutingView
    ) -> tuple[Destination | Refusal, list[Endpoint]]:
        """Where a request goes and the endpoints it may use, read from one snapshot at
        once (as the proxy reads one configuration), on a decision thread."""
        decision = view.route(self.kind, routed, self._rng)
        if isinstance(decision, Refusal):
            return decision, []
        return decision, view.endpoints(decision)

    async def _request_body(self, request: web.BaseRequest) -> bytes | AsyncIterator[bytes] | None:
        """The request body: bytes when it fits the buffer, a stream of its bytes when the
        proxy streams larger bodies (Envoy), ``None`` when it is over the proxy's limit."""
        buffered = bytearray()
        limit = self.limits.max_request_body
        cap = BUFFERED_REQUEST_BYTES if limit is None else limit
        while len(buffered) <= cap:
            chunk = await request.content.readany()
            if not chunk:
                return bytes(buffered)
            buffered += chunk
        if limit is not None:
            return None

        async def stream() -> AsyncIterator[bytes]:
            yield bytes(buffered)
            while chunk := await request.content.readany():
                yield chunk

        return stream()

    def _too_large(self, routed: RoutedRequest, limit: int) -> web.Response:
        reason = f"client intended to send too large body (over {limit} bytes): 413"
        self._record(routed, "-", "-", 413, reason)
        response = web.Response(status=413, text="413 Request Entity Too Large\n")
        response.force_close()  # the rest of the body is never read
        return response

    async def _answer(
        self,
        routed: RoutedRequest,
        decision: Destination,
        endpoint: Endpoint,
        upstream: aiohttp.ClientResponse,
    ) -> web.Response:
        """The upstream's answer as the proxy passes it on, or the proxy's own 502."""
        problem = self._header_problem(upstream)
        payload = None if problem else await read_bounded(upstream, MAX_ANSWER_BYTES)
        if payload is None:
            problem = problem or (
                f"upstream answer body over {MAX_ANSWER_BYTES} bytes (the local router "
                "buffers whole answers)"
            )
        if problem:
            self._record(routed, str(decision), endpoint.pod, 502, problem)
            return web.Response(status=502, text=f"{problem}\n")
        assert payload is not None
        out = web.Response(status=upstream.status, body=payload)
        for name, value in upstream.headers.items():
            if name.lower() not in HOP_BY_HOP:
                out.headers.add(name, value)
        self._record(routed, str(decision), endpoint.pod, upstream.status, decision.reason)
        return out

    def _header_problem(self, upstream: aiohttp.ClientResponse) -> str | None:
        """Why the proxy refuses the upstream's status line and headers, or None."""
        if not 200 <= upstream.status <= 599:
            return f"{self.limits.bad_upstream} (status {upstream.status})"
        count = len(upstream.raw_headers)
        size = len(f"HTTP/1.1 {upstream.status} {upstream.reason or ''}\r\n") + sum(
            len(name) + len(value) + 4 for name, value in upstream.raw_headers
        )
        limits = self.limits
        if size > limits.max_response_header_bytes or (
            limits.max_response_headers is not None and count > limits.max_response_headers
        ):
            return f"{limits.too_big_header} ({count} headers, {size} bytes)"
        return None

    def _unparseable(self, exc: aiohttp.ClientError) -> str:
        detail = str(exc).replace("\n", " ")[:200]
        if any(word in detail for word in ("too long", "Got more than", "Too many headers")):
            return f"{self.limits.too_big_header} ({type(exc).__name__}: {detail})"
        return f"{self.limits.bad_upstream} ({type(exc).__name__}: {detail})"

    def _pick(self, key: str, endpoints: list[Endpoint], attempt: int) -> Endpoint:
        # ingress-nginx load-balance default: round_robin within the chosen upstream.
        index = self._round_robin[key]
        self._round_robin[key] = index + 1
        return endpoints[(index + attempt) % len(endpoints)]

    def _record(self, request: RoutedRequest, dest: str, pod: str, status: int, why: str) -> None:
        self._log.append(
            AccessRecord(time.time(), request.host, request.path, dest, pod, status, why)
        )


class ConnectionRouter:
    """kube-proxy (iptables mode): a ready endpoint chosen at random per new connection."""

    def __init__(
        self,
        service: str,
        endpoints: Callable[[], list[Endpoint]],
        rng: random.Random,
        errors: RouterErrors,
        access_log: collections.deque[AccessRecord],
        in_flight: InFlight | None = None,
    ) -> None:
        self.service = service
        self.in_flight = in_flight if in_flight is not None else InFlight()
        self._endpoints = endpoints
        self._rng = rng
        self._errors = errors
        self._log = access_log
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> int:
        """Listen on a free port of 127.0.0.1 and return it."""
        self._server = await asyncio.start_server(self._on_connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening and cut open connections."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._splice(reader, writer)
        except (asyncio.CancelledError, ConnectionError):
            pass
        except Exception as exc:
            self._errors.add(exc)
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _splice(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        endpoints = self._endpoints()
        if not endpoints:
            # No ready endpoint: iptables REJECTs the connection.
            self._log.append(
                AccessRecord(time.time(), None, "-", self.service, "-", 0, "no endpoints")
            )
            return
        # iptables "-m statistic --mode random --probability 1/n" chain: uniform per connection.
        endpoint = endpoints[self._rng.randrange(len(endpoints))]
        self._log.append(
            AccessRecord(time.time(), None, "-", self.service, endpoint.pod, 0, "new connection")
        )
        token = self.in_flight.begin(None)
        self.in_flight.picked(token, endpoint.pod)
        try:
            up_reader, up_writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        finally:
            self.in_flight.end(token)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()
