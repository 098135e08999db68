"""Real HTTP traffic: a concurrent sampler that classifies every response by version.

Connection policy follows the data plane (DESIGN.md "Traffic"): where routing is per
request (ingress-nginx, Envoy) the sampler keeps connections alive; where it is per
connection (a plain Service through kube-proxy) it opens a new connection per request,
because keep-alive would pin the client to one pod.

Every response is classified exactly once: by its version header when the status is below
500, otherwise as an error ("HTTP 503", "connection reset", "timeout", "no version header").
Errors are never counted as a version's share; an HTTP 5xx that names its version is also
recorded for that version (``Sample.version_errors``), which is how canary analysis tells a
failing canary from a failing stable.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp

from pytest_canary.apps import UnreadableVersion, VersionClassifier, VersionFromHeader
from pytest_canary.errors import BackendError
from pytest_canary.spec import check_request


@dataclass(frozen=True)
class Entry:
    """How traffic enters a release.

    Attributes:
        url: base URL requests are sent to, e.g. ``http://127.0.0.1:38211``.
        host: Host header to send (``None`` keeps the URL's).
        per_connection: open a new connection for every request, because the data plane
            balances per connection (kube-proxy); keep-alive would pin one pod.
        description: what the entry is, for messages ("ingress-nginx model on 127.0.0.1:38211").
        relay: for mesh scenarios, traffic enters through a frontend app's ``/relay`` which
            calls this in-mesh URL (``None`` otherwise).
    """

    url: str
    host: str | None = None
    per_connection: bool = False
    description: str = ""
    relay: str | None = None


DEFAULT_CONCURRENCY = 16
DEFAULT_TIMEOUT = 10.0
# Longest answer body read: what a version reader needs is at the start of an answer; a
# longer body is an error ("body over 4 MiB"), never unbounded memory.
MAX_BODY_BYTES = 4 * 1024 * 1024

# Reads the version from a response: (status, headers, body) -> version or None.
Classifier = VersionClassifier


def relay_classifier() -> Classifier:
    """Classify a frontend's ``/relay`` answer by the version its backend call reached
    (the JSON ``seen`` map of one relayed request); a failed relayed call is an error."""

    def classify(status: int, headers: Mapping[str, str], body: bytes) -> str | None:
        try:
            answer = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: a deeply nested body
            return None
        if not isinstance(answer, dict):
            return None
        seen = answer.get("seen")
        if answer.get("errors") or not isinstance(seen, dict) or len(seen) != 1:
            return None
        return str(next(iter(seen)))

    return classify


@dataclass
class Sample:
    """What a batch of requests observed.

    Attributes:
        counts: responses per version.
        errors: failed requests per reason (5xx, resets, timeouts, unclassifiable answers).
        latencies: seconds per request, in completion order.
        version_errors: failed answers that named their version (an HTTP 5xx with a version
            header), per version; they are in ``errors`` too, never in ``counts``.
        version_latencies: seconds per answer that named its version (successes and
            ``version_errors``), per version.
        unattributed: failed requests that named no version, per reason (a subset of
            ``errors``: timeouts, resets, a router's 502, ...).
    """

    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    version_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    version_latencies: dict[str, list[float]] = field(default_factory=dict)
    unattributed: collections.Counter[str] = field(default_factory=collections.Counter)

    def failed(self, reason: str) -> None:
        """Count a failed request that named no version."""
        self.errors[reason] += 1
        self.unattributed[reason] += 1

    @property
    def classified(self) -> int:
        """Responses attributed to a version."""
        return sum(self.counts.values())

    @property
    def error_count(self) -> int:
        """Failed requests."""
        return sum(self.errors.values())

    @property
    def total(self) -> int:
        """Every request sent."""
        return self.classified + self.error_count

    @property
    def unattributed_errors(self) -> int:
        """Failed requests that named no version (refused, reset, timed out, unreadable)."""
        return sum(self.unattributed.values())

    def share(self, version: str) -> float:
        """Observed share of ``version`` among classified responses (0 when there are none)."""
        return self.counts[version] / self.classified if self.classified else 0.0

    def latency_summary(self) -> dict[str, float]:
        """p50, p95 and max latency in milliseconds (empty when nothing was sent)."""
        if not self.latencies:
            return {}
        ordered = sorted(self.latencies)

        def at(q: float) -> float:
            return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

        return {"p50": at(0.50), "p95": at(0.95), "max": 1000 * ordered[-1]}

    def merge(self, other: Sample) -> None:
        """Add another sample's observations to this one."""
        self.counts.update(other.counts)
        self.errors.update(other.errors)
        self.latencies.extend(other.latencies)
        self.elapsed += other.elapsed
        self.version_errors.update(other.version_errors)
        self.unattributed.update(other.unattributed)
        for version, latencies in other.version_latencies.items():
            self.version_latencies.setdefault(version, []).extend(latencies)

    def __repr__(self) -> str:
        return (
            f"Sample(n={self.total}, counts={dict(self.counts)}, errors={dict(self.errors)}, "
            f"elapsed={self.elapsed:.2f}s)"
        )


async def read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body of ``response``, or None when it is longer than ``limit`` bytes.

    Raises:
        aiohttp.ClientPayloadError: the body is truncated or its chunking is broken.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _cookie_header(cookies: Mapping[str, str] | None) -> dict[str, str]:
    if not cookies:
        return {}
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}


class Sampler:
    """Sends bounded batches of real requests to an entry and classifies the answers.

    Args:
        entry: where traffic enters (URL, Host header, connection policy).
        concurrency: requests in flight at once.
        timeout: seconds per request.
        classify: reads the version of a response.
        path: request path (the release's path by default "/").

    The sampler owns an event loop in the calling thread; use it from one thread.

    Example:
        >>> with Sampler(Entry("http://127.0.0.1:8080")) as sampler:  # doctest: +SKIP
        ...     sample = sampler.sample(100)
    """

    def __init__(
        self,
        entry: Entry,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout: float = DEFAULT_TIMEOUT,
        classify: Classifier | None = None,
        path: str = "/",
    ) -> None:
        self.entry = entry
        self.concurrency = concurrency
        self.timeout = timeout
        self.classify = classify or VersionFromHeader().classifier()
        self.path = path
        self._loop = asyncio.new_event_loop()
        self._session: aiohttp.ClientSession | None = None

    async def _session_get(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.concurrency,
                force_close=self.entry.per_connection,
                enable_cleanup_closed=False,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    def sample(
        self,
        n: int,
        *,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        path: str | None = None,
        stop_when: Callable[[str], bool] | None = None,
    ) -> Sample:
        """Send ``n`` requests (``concurrency`` at a time) and return what they observed.

        Args:
            stop_when: called with the version each answer names (an HTTP 5xx that names
                one included); when it returns True, requests not yet sent are skipped (used
                to stop at the first leak).

        Raises:
            CanaryConfigError: ``headers`` or ``cookies`` are not a bounded mapping of str
                to str (:func:`pytest_canary.spec.check_request`).
        """
        if n < 0:
            raise ValueError(f"n={n}: must be 0 or more")
        headers, cookies = check_request(headers, cookies)
        return self._loop.run_until_complete(
            self._sample(n, dict(headers or {}), cookies, path or self.path, stop_when)
        )

    async def _sample(
        self,
        n: int,
        headers: dict[str, str],
        cookies: Mapping[str, str] | None,
        path: str,
        stop_when: Callable[[str], bool] | None,
    ) -> Sample:
        session = await self._session_get()
        sample = Sample()
        request_headers = dict(headers) | _cookie_header(cookies)
        if self.entry.host and not any(k.lower() == "host" for k in request_headers):
            request_headers["Host"] = self.entry.host
        url = self.entry.url.rstrip("/") + path
        remaining = n
        stop = False
        started = time.perf_counter()

        async def worker() -> None:
            nonlocal remaining, stop
            while remaining > 0 and not stop:
                remaining -= 1
                version = await self._one(session, url, request_headers, sample)
                if version is not None and stop_when is not None and stop_when(version):
                    stop = True

        await asyncio.gather(*(worker() for _ in range(max(1, min(self.concurrency, n)))))
        sample.elapsed = time.perf_counter() - started
        return sample

    async def _one(
        self,
        session: aiohttp.ClientSession,
        url: str,
        headers: dict[str, str],
        sample: Sample,
    ) -> str | None:
        began = time.perf_counter()
        version: str | None = None
        try:
            async with session.get(url, headers=headers, allow_redirects=False) as response:
                status = response.status
                body = await read_bounded(response, MAX_BODY_BYTES)
                if body is None:
                    response.close()  # the rest is never read: drop the connection
                    sample.failed(f"HTTP {status} with a body over {MAX_BODY_BYTES} bytes")
                    return None
                if status < 100:  # no HTTP status at all
                    sample.failed(f"HTTP {status}")
                    return None
                if status < 200:
                    # An interim status (101 Switching Protocols, ...) as the final answer to
                    # a plain GET, which asked for no upgrade: a protocol error, not an answer.
                    response.close()
                    sample.failed(f"HTTP {status} to a request that asked for no upgrade")
                    return None
                if status >= 500:
                    # A failed answer still says who failed when it names its version plainly;
                    # canary analysis counts it for that version (never as its share).
                    try:
                        version = self.classify(status, response.headers, body)
                    except UnreadableVersion:
                        version = None
                else:
                    version = self.classify(status, response.headers, body)
        except asyncio.TimeoutError:
            sample.failed("timeout")
            return None
        except aiohttp.ServerDisconnectedError:
            sample.failed("connection closed by server")
            return None
        except aiohttp.ClientConnectionError as exc:
            sample.failed(f"connection error ({type(exc).__name__})")
            return None
        except aiohttp.ClientError as exc:  # truncated body, bad status line, ...
            sample.failed(f"bad response ({type(exc).__name__})")
            return None
        except UnreadableVersion as exc:
            sample.failed(f"HTTP {status}: {exc}")
            return None
        finally:
            latency = time.perf_counter() - began
            sample.latencies.append(latency)
            if version:  # an answer that named its version, failed or not
                sample.version_latencies.setdefault(version, []).append(latency)
        if status >= 500:
            if version:
                sample.errors[f"HTTP {status}"] += 1
                sample.version_errors[version] += 1
                return version
            sample.failed(f"HTTP {status}")
            return None
        if not version:
            sample.failed(f"HTTP {status} without a version")
            return None
        sample.counts[version] += 1
        return version

    def close(self) -> None:
        """Close connections and the loop (idempotent)."""
        if self._loop.is_closed():
            return
        if self._session is not None:
            self._loop.run_until_complete(self._session.close())
            self._session = None
        self._loop.run_until_complete(asyncio.sleep(0))
        self._loop.close()

    def __enter__(self) -> Sampler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BackgroundTraffic:
    """Traffic that keeps flowing in a thread while the test changes the release
    (Terratest's ``ContinuouslyCheckURL``): every failed request is recorded.

    Example:
        >>> with BackgroundTraffic(entry) as traffic:  # doctest: +SKIP
        ...     release.promote()
        >>> traffic.sample.error_count
        0
    """

    def __init__(
        self,
        entry: Entry,
        *,
        concurrency: int = 4,
        batch: int = 8,
        max_seconds: float = 300.0,
        **sampler_args: Any,
    ) -> None:
        self.entry = entry
        self.concurrency = concurrency
        self.batch = batch
        self.max_seconds = max_seconds
        self.sampler_args = sampler_args
        self.sample = Sample()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> BackgroundTraffic:
        """Start sending; returns once the first batch has completed."""
        first = threading.Event()

        def run() -> None:
            deadline = time.monotonic() + self.max_seconds
            try:
                with Sampler(self.entry, concurrency=self.concurrency, **self.sampler_args) as s:
                    while not self._stop.is_set() and time.monotonic() < deadline:
                        self.sample.merge(s.sample(self.batch))
                        first.set()
            except BaseException as exc:
                self._error = exc
            finally:
                first.set()

        self._thread = threading.Thread(target=run, name="pytest-canary-traffic", daemon=True)
        self._thread.start()
        if not first.wait(timeout=self._batch_deadline()):
            self.stop()
            raise BackendError(
                f"background traffic to {self.entry.url}: the first batch of {self.batch} "
                f"requests did not finish within {self._batch_deadline():.0f}s"
            )
        return self

    def _batch_deadline(self) -> float:
        # One batch: at most batch / concurrency rounds of requests, each bounded by the
        # request timeout, plus slack for the connection pool.
        rounds = -(-self.batch // self.concurrency)
        return rounds * float(self.sampler_args.get("timeout", DEFAULT_TIMEOUT)) + 5.0

    def stop(
        self, *, min_requests: int = 0, max_wait: float = 60.0, until_error: bool = False
    ) -> Sample:
        """Stop sending and return everything observed; re-raises a sampler error here.

        Args:
            min_requests: keep sending until at least this many requests were sent in all
                (a check of the change needs enough of them to mean something), for at most
                ``max_wait`` seconds more.
            max_wait: bound of that wait, in seconds.
            until_error: stop that wait at the first failed request (its verdict is known).
        """
        deadline = time.monotonic() + max_wait
        while (
            self.sample.total < min_requests
            and not (until_error and self.sample.error_count)
            and time.monotonic() < deadline
            and self._thread is not None
            and self._thread.is_alive()
        ):
            time.sleep(0.005)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._batch_deadline())
            if self._thread.is_alive():
                raise BackendError(
                    f"background traffic to {self.entry.url} did not stop within "
                    f"{self._batch_deadline():.0f}s of being asked to"
                )
        if self._error is not None:
            raise self._error
        return self.sample

    def __enter__(self) -> BackgroundTraffic:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
