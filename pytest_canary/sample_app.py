"""The Python sample app: a tiny HTTP service that says which version answered.

pytest-canary deploys two builds of this app (stable and canary), sends real traffic through the
data plane under test and classifies every answer by its ``X-App-Version`` header. The Go app in
``sample_app/go`` implements the same contract; ``sample_app/README.md`` is its reference.

This module is standard library only and compatible with Python 3.9, because it runs as a separate
process: from an installed wheel (``python -m pytest_canary.sample_app``, the local backend) and as
the single file ``/app/sample_app.py`` in a minimal image (``sample_app/python/Dockerfile``).

Example:
    Run a canary build on a free port and read the port from the first line of stdout::

        $ export APP_VERSION=v2 APP_TRACK=canary
        $ python -m pytest_canary.sample_app --host 127.0.0.1 --port 0
        listening on 127.0.0.1:41234

Configuration (a flag wins over its environment variable; an empty variable counts as unset):

1. ``--version-label`` / ``APP_VERSION``: the version reported everywhere (required).
2. ``--port`` / ``PORT`` (default 8080, ``0`` picks a free port), ``--host`` / ``HOST``
   (default ``0.0.0.0``).
3. ``APP_NAME`` (default ``kubeapp``), ``APP_TRACK`` (default ``stable``), ``POD_NAME`` (default
   the hostname).
4. ``ERROR_RATE`` (0..1, default 0), ``LATENCY_MS`` (milliseconds added before answering: a
   number, or ``LO-HI`` for a delay drawn uniformly from LO to HI per request; default 0) and
   ``ERROR_SEED``: fault injection on every path except ``/health`` and ``/relay``.
5. ``STARTUP_DELAY`` (seconds, default 0) and ``SHUTDOWN_GRACE`` (seconds, default 5).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import ipaddress
import json
import math
import os
import random
import select
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, TextIO
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

__all__ = [
    "AppConfig",
    "ConfigError",
    "RelayResult",
    "SampleAppServer",
    "load_config",
    "main",
    "relay",
    "serve",
]

DEFAULT_PORT = 8080
DEFAULT_HOST = "0.0.0.0"
DEFAULT_NAME = "kubeapp"
DEFAULT_TRACK = "stable"
DEFAULT_SHUTDOWN_GRACE = 5.0

RELAY_MAX_CALLS = 1000
"""Upper bound of ``/relay``'s ``n``: one relay call must finish well within a client timeout."""

RELAY_CALL_TIMEOUT = 5.0
"""Seconds each outgoing ``/relay`` call may take (connect, and each read or write)."""

FORWARD_PREFIX = "x-canary-forward-"
"""Request headers named ``X-Canary-Forward-<name>`` are sent on as ``<name>`` by ``/relay``."""

IDLE_TIMEOUT = 120.0
"""Seconds a keep-alive connection may sit idle (or dribble a request) before it is closed."""

EXIT_USAGE = 2
"""Exit status for a configuration the app cannot run with (like argparse's usage errors)."""

_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"
_LOOPBACK_NAMES = frozenset({"localhost"})
# A connection accepted just before the listener closed gets this long to send its request.
_LATE_REQUEST_TIMEOUT = 1.0
_MAX_DISCARDED_BODY = 1 << 20

MAX_LATENCY_MS = 60_000.0
"""Largest injected delay: a minute, past any client timeout."""


class ConfigError(ValueError):
    """A flag or environment variable the app cannot run with.

    The message names the setting, where it came from, the value and what is accepted, e.g.
    ``ERROR_RATE='1.5' from the environment: want a number from 0 to 1``.
    """


@dataclass(frozen=True)
class AppConfig:
    """Everything the app needs to run, resolved from flags and environment.

    Attributes:
        version: Reported in the ``X-App-Version`` header and the JSON bodies.
        host: Address to listen on.
        port: Port to listen on; 0 picks a free one (printed in the ``listening on`` line).
        name: The ``app`` field of ``GET /``.
        track: The ``track`` field of ``GET /`` (``stable`` or ``canary`` by convention).
        hostname: The ``hostname`` field of ``GET /`` (the pod name in Kubernetes).
        error_rate: Fraction of faultable requests answered with HTTP 500.
        latency_ms: ``(low, high)`` milliseconds added before answering a faultable request,
            drawn uniformly per request (``low == high``: a fixed delay).
        error_seed: Seed of the fault generators; None seeds from the OS.
        startup_delay: Seconds to wait before listening.
        shutdown_grace: Seconds in-flight requests get after SIGTERM/SIGINT.
    """

    version: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    name: str = DEFAULT_NAME
    track: str = DEFAULT_TRACK
    hostname: str = field(default_factory=socket.gethostname)
    error_rate: float = 0.0
    latency_ms: tuple[float, float] = (0.0, 0.0)
    error_seed: int | None = None
    startup_delay: float = 0.0
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE


def _setting(
    flag_value: str | None, flag: str, env: Mapping[str, str], variable: str
) -> tuple[str | None, str]:
    """Returns the raw value of a setting and a phrase saying where it came from."""
    if flag_value is not None:
        return flag_value, f"{flag}={flag_value!r}"
    value = env.get(variable, "")
    if value == "":
        return None, ""
    return value, f"{variable}={value!r} from the environment"


def _number(raw: str, origin: str, *, lowest: float, highest: float, want: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{origin}: want {want}") from None
    # NaN fails both comparisons, so it is rejected here too.
    if not (math.isfinite(value) and lowest <= value <= highest):
        raise ConfigError(f"{origin}: want {want}")
    return value


def _latency(raw: str, origin: str) -> tuple[float, float]:
    """``LATENCY_MS``: ``N`` or ``LO-HI`` milliseconds, from 0 to :data:`MAX_LATENCY_MS`."""
    want = (
        f"want milliseconds from 0 to {MAX_LATENCY_MS:g}: a number, or LO-HI (e.g. 50-150) "
        "for a delay drawn uniformly per request"
    )
    low_text, dash, high_text = raw.strip().partition("-")
    low = _number(low_text, origin, lowest=0.0, highest=MAX_LATENCY_MS, want=want)
    high = (
        _number(high_text, origin, lowest=0.0, highest=MAX_LATENCY_MS, want=want) if dash else low
    )
    if high < low:
        raise ConfigError(f"{origin}: {want}, with LO <= HI")
    return low, high


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_canary.sample_app",
        description="The pytest-canary sample app: answers with its version on every path.",
    )
    parser.add_argument(
        "--version-label", help="Version to report (default: env APP_VERSION; required)."
    )
    parser.add_argument(
        "--port",
        help=f"Port to listen on, 0 for a free one (default: env PORT, else {DEFAULT_PORT}).",
    )
    parser.add_argument(
        "--host", help=f"Address to listen on (default: env HOST, else {DEFAULT_HOST})."
    )
    return parser.parse_args(list(argv))


def load_config(argv: Sequence[str], env: Mapping[str, str]) -> AppConfig:
    """Resolves the app's configuration; a flag wins over its environment variable.

    Args:
        argv: Command-line arguments without the program name.
        env: The environment, usually ``os.environ``.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: A value is missing or invalid; the message says which and where it came from.
        SystemExit: argparse rejected the command line (status 2) or printed ``--help`` (status 0).
    """
    args = _parse_args(argv)

    version, _ = _setting(args.version_label, "--version-label", env, "APP_VERSION")
    if not version:
        raise ConfigError(
            "no version to report: pass --version-label or set APP_VERSION "
            "(the image build sets it from --build-arg VERSION)"
        )

    port = DEFAULT_PORT
    raw, origin = _setting(args.port, "--port", env, "PORT")
    if raw is not None:
        want = "an integer from 0 to 65535 (0 picks a free port)"
        try:
            port = int(raw)
        except ValueError:
            raise ConfigError(f"{origin}: want {want}") from None
        if not 0 <= port <= 65535:
            raise ConfigError(f"{origin}: want {want}")

    host, _ = _setting(args.host, "--host", env, "HOST")

    error_rate = 0.0
    raw, origin = _setting(None, "", env, "ERROR_RATE")
    if raw is not None:
        error_rate = _number(raw, origin, lowest=0.0, highest=1.0, want="a number from 0 to 1")

    latency_ms = (0.0, 0.0)
    raw, origin = _setting(None, "", env, "LATENCY_MS")
    if raw is not None:
        latency_ms = _latency(raw, origin)

    error_seed: int | None = None
    raw, origin = _setting(None, "", env, "ERROR_SEED")
    if raw is not None:
        try:
            error_seed = int(raw)
        except ValueError:
            raise ConfigError(f"{origin}: want an integer") from None

    delays = {}
    for variable, default in (("STARTUP_DELAY", 0.0), ("SHUTDOWN_GRACE", DEFAULT_SHUTDOWN_GRACE)):
        raw, origin = _setting(None, "", env, variable)
        delays[variable] = (
            default
            if raw is None
            else _number(raw, origin, lowest=0.0, highest=math.inf, want="seconds, 0 or more")
        )

    return AppConfig(
        version=version,
        host=host or DEFAULT_HOST,
        port=port,
        name=env.get("APP_NAME") or DEFAULT_NAME,
        track=env.get("APP_TRACK") or DEFAULT_TRACK,
        hostname=env.get("POD_NAME") or socket.gethostname(),
        error_rate=error_rate,
        latency_ms=latency_ms,
        error_seed=error_seed,
        startup_delay=delays["STARTUP_DELAY"],
        shutdown_grace=delays["SHUTDOWN_GRACE"],
    )


# --------------------------------------------------------------------------------------------
# /relay: the frontend role (mesh sourceLabels, header routing through a caller)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RelayResult:
    """What ``/relay`` saw calling its target.

    Attributes:
        seen: Number of 2xx answers per ``X-App-Version`` value.
        errors: Calls that failed to connect, timed out, answered non-2xx or had no version header.
    """

    seen: dict[str, int]
    errors: int


@dataclass(frozen=True)
class _Proxy:
    host: str
    port: int
    authorization: str | None


class _RelayError(Exception):
    """A relay call that cannot even be attempted (e.g. an unsupported proxy URL)."""


def _is_loopback(host: str) -> bool:
    # Go's net/http (httpproxy.useProxy) never proxies localhost or loopback addresses; we do the
    # same so both sample apps relay identically whatever HTTP_PROXY says.
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _environment(*names: str) -> str:
    """The first non-empty variable among ``names`` (Go's httpproxy reads upper case first)."""
    for name in names:
        value = os.environ.get(name, "")
        if value:
            return value
    return ""


def _no_proxy_matches(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` exempts ``host:port``, by Go's rules (x/net/http/httpproxy).

    ``*`` matches everything; an IP or CIDR matches addresses; ``example.com`` matches it and its
    subdomains, ``.example.com`` and ``*.example.com`` only subdomains; an entry may carry
    ``:port``.
    """
    host = host.lower()
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw_entry in no_proxy.split(","):
        entry = raw_entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            try:
                if address is not None and address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass  # not a CIDR: Go skips such entries too
            continue
        entry_host, entry_port = entry, ""
        if entry.startswith("["):
            entry_host, _, rest = entry[1:].partition("]")
            entry_port = rest[1:] if rest.startswith(":") else ""
        elif entry.count(":") == 1:
            entry_host, _, entry_port = entry.partition(":")
        if entry_port and entry_port != str(port):
            continue
        try:
            entry_address = ipaddress.ip_address(entry_host)
        except ValueError:
            entry_address = None  # a domain name
        if entry_address is not None:
            if address == entry_address:
                return True
        elif entry_host.startswith((".", "*.")):
            if host.endswith(entry_host.lstrip("*")):
                return True
        elif host == entry_host or host.endswith("." + entry_host):
            return True
    return False


def _proxy_for(scheme: str, host: str, port: int) -> _Proxy | None:
    """The proxy ``HTTP_PROXY``/``HTTPS_PROXY`` and ``NO_PROXY`` choose, as Go's net/http does."""
    if scheme == "https":
        proxy_url = _environment("HTTPS_PROXY", "https_proxy")
    elif os.environ.get("REQUEST_METHOD"):
        # Go and urllib ignore HTTP_PROXY under CGI, where it is a client-supplied header.
        proxy_url = ""
    else:
        proxy_url = _environment("HTTP_PROXY", "http_proxy")
    if not proxy_url or _is_loopback(host):
        return None
    if _no_proxy_matches(host, port, _environment("NO_PROXY", "no_proxy")):
        return None
    if "://" not in proxy_url:
        proxy_url = "http://" + proxy_url  # like Go: a bare host:port means an http proxy
    parts = urlsplit(proxy_url)
    try:
        proxy_port = parts.port or 80
    except ValueError:
        raise _RelayError(f"proxy {proxy_url!r}: invalid port") from None
    if parts.scheme != "http" or not parts.hostname:
        raise _RelayError(f"proxy {proxy_url!r}: want http://HOST[:PORT]")
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
    return _Proxy(parts.hostname, proxy_port, authorization)


class _RelayConnection:
    """One keep-alive connection to a relay target, directly or through the environment's proxy."""

    def __init__(self, target: SplitResult, headers: Mapping[str, str], timeout: float) -> None:
        host = target.hostname or ""
        port = target.port or (443 if target.scheme == "https" else 80)
        self._headers = dict(headers)
        self._target = target._replace(fragment="").geturl()
        path = target.path or "/"
        self._path = f"{path}?{target.query}" if target.query else path
        self._conn: http.client.HTTPConnection
        self._responses_on_connection = 0

        proxy = _proxy_for(target.scheme, host, port)
        if target.scheme == "http":
            if proxy is None:
                self._conn = http.client.HTTPConnection(host, port, timeout=timeout)
            else:
                # An HTTP proxy gets the absolute URL and the target's Host header.
                self._conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=timeout)
                self._path = self._target
                if proxy.authorization:
                    self._headers.setdefault("Proxy-Authorization", proxy.authorization)
        else:
            context = ssl.create_default_context()
            if proxy is None:
                self._conn = http.client.HTTPSConnection(
                    host, port, timeout=timeout, context=context
                )
            else:
                self._conn = http.client.HTTPSConnection(
                    proxy.host, proxy.port, timeout=timeout, context=context
                )
                tunnel_headers = (
                    {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
                )
                self._conn.set_tunnel(host, port, headers=tunnel_headers)

    def fetch_version(self) -> str | None:
        """One GET; returns the answer's version, or None if the call counts as an error."""
        for attempt in (1, 2):
            reused = self._responses_on_connection > 0
            try:
                self._conn.request("GET", self._path, headers=self._headers)
                response = self._conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.close()
                # A kept-alive connection the server closed meanwhile: retry once on a new one,
                # as Go's http.Transport does for idempotent requests. Otherwise (refused,
                # timed out, unresolvable, unsendable header) it is an error the relay counts and
                # reports in "errors": that is its job, so the exception ends here.
                stale = isinstance(exc, (ConnectionError, http.client.BadStatusLine))
                if reused and stale and attempt == 1:
                    continue
                return None
            self._responses_on_connection += 1
            if response.will_close:
                self.close()
            version = response.getheader("X-App-Version")
            if not 200 <= response.status < 300 or not version:
                return None
            return version
        return None

    def close(self) -> None:
        """Closes the connection; the next call opens a new one."""
        self._conn.close()
        self._responses_on_connection = 0


def relay(
    url: str,
    calls: int,
    headers: Mapping[str, str] | None = None,
    timeout: float = RELAY_CALL_TIMEOUT,
) -> RelayResult:
    """Calls ``url`` sequentially and counts the versions that answered.

    Honours ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` like Go's ``http.ProxyFromEnvironment``
    (loopback targets are never proxied) and keeps one connection for all calls where the target
    allows it.

    Args:
        url: An ``http://`` or ``https://`` URL with a host.
        calls: How many GET requests to send, one after the other.
        headers: Extra request headers for every call.
        timeout: Seconds for each connect, read and write.

    Returns:
        The versions seen and the number of failed calls.

    Raises:
        ValueError: ``url`` is not an http(s) URL with a host.
    """
    target = _parse_relay_target(url)
    seen: dict[str, int] = {}
    errors = 0
    try:
        connection = _RelayConnection(target, headers or {}, timeout)
    except _RelayError:
        return RelayResult(seen={}, errors=calls)
    try:
        for _ in range(calls):
            version = connection.fetch_version()
            if version is None:
                errors += 1
            else:
                seen[version] = seen.get(version, 0) + 1
    finally:
        connection.close()
    return RelayResult(seen=dict(sorted(seen.items())), errors=errors)


def _parse_relay_target(url: str) -> SplitResult:
    target = urlsplit(url)
    try:
        _ = target.port  # raises ValueError for a port that is not a number
        valid = target.scheme in ("http", "https") and bool(target.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise ValueError(f"relay to={json.dumps(url)}: want an http:// or https:// URL with a host")
    return target


# --------------------------------------------------------------------------------------------
# The HTTP server
# --------------------------------------------------------------------------------------------


class _Faults:
    """Decides, per request, whether to answer with an injected HTTP 500."""

    def __init__(self, rate: float, seed: int | None) -> None:
        self._rate = rate
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def hit(self) -> bool:
        if self._rate <= 0.0:
            return False
        if self._rate >= 1.0:
            return True
        with self._lock:
            return self._rng.random() < self._rate


class _Delays:
    """Sleeps, per request, the injected delay: fixed, or uniform on [low, high] ms."""

    def __init__(self, latency_ms: tuple[float, float], seed: int | None) -> None:
        self._low, self._high = latency_ms
        # Its own generator: adding a delay does not change which requests fault.
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self) -> float:
        """The next delay in milliseconds."""
        if self._high <= self._low:
            return self._low
        with self._lock:
            return self._rng.uniform(self._low, self._high)

    def wait(self) -> None:
        if self._high > 0.0:
            time.sleep(self.draw() / 1000.0)


class _DateHeader:
    """The ``Date`` header value, formatted at most once per second (it is on every response)."""

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def value(self) -> str:
        now = int(time.time())
        if now != self._second:
            # Two threads may both reformat in the same second; both write the same string.
            self._value = formatdate(now, usegmt=True)
            self._second = now
        return self._value


class SampleAppServer(ThreadingHTTPServer):
    """The sample app's HTTP/1.1 server, with graceful draining.

    Binds and listens on construction. Call ``serve_forever()`` (in a thread) to serve and
    ``drain()`` to stop: the listener closes, idle keep-alive connections close, in-flight
    requests finish (answered with ``Connection: close``) until the grace runs out.

    Example:
        >>> server = SampleAppServer(AppConfig(version="v1", host="127.0.0.1", port=0))
        >>> thread = threading.Thread(target=server.serve_forever, daemon=True)
        >>> thread.start()
        >>> server.drain(grace=1.0)
        True
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.faults = _Faults(config.error_rate, config.error_seed)
        self.delays = _Delays(config.latency_ms, config.error_seed)
        self.date_header = _DateHeader()
        self.draining = False
        self._lock = threading.Lock()
        self._connection_closed = threading.Condition(self._lock)
        # Open connections; True while a request on it is being handled.
        self._busy: dict[socket.socket, bool] = {}
        if ":" in config.host:
            self.address_family = socket.AF_INET6
        super().__init__((config.host, config.port), SampleAppHandler)

    def server_bind(self) -> None:
        """Binds without HTTPServer's reverse DNS lookup (slow or hanging without DNS)."""
        # socketserver.TCPServer.server_bind only binds; HTTPServer's adds socket.getfqdn().
        socketserver.TCPServer.server_bind(self)
        self.server_name = self.config.host
        self.server_port = self.port

    @property
    def port(self) -> int:
        """The port actually bound (differs from ``config.port`` when that is 0)."""
        return int(self.socket.getsockname()[1])

    @property
    def listen_address(self) -> str:
        """``HOST:PORT`` as printed in the ``listening on`` line (IPv6 hosts in brackets)."""
        host = self.config.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def connection_opened(self, connection: socket.socket) -> bool:
        """Registers a connection; returns True if the server is already draining."""
        with self._lock:
            self._busy[connection] = False
            return self.draining

    def request_started(self, connection: socket.socket) -> None:
        """Marks a connection busy: drain() lets its request finish."""
        with self._lock:
            self._busy[connection] = True

    def request_finished(self, connection: socket.socket) -> bool:
        """Marks a connection idle; returns True if it must close now (the server is draining)."""
        with self._lock:
            self._busy[connection] = False
            return self.draining

    def connection_closed(self, connection: socket.socket) -> None:
        """Forgets a connection and wakes drain()."""
        with self._lock:
            self._busy.pop(connection, None)
            self._connection_closed.notify_all()

    def drain(self, grace: float) -> bool:
        """Stops accepting, closes idle connections and waits for in-flight requests.

        Args:
            grace: Seconds in-flight requests get to finish; then their connections are cut.

        Returns:
            True if every connection closed within the grace.
        """
        deadline = time.monotonic() + grace
        self.shutdown()  # stop the accept loop...
        self.server_close()  # ...and close the listener: new connections are refused
        with self._lock:
            self.draining = True
            # Idle keep-alive connections close now so their clients reconnect elsewhere;
            # busy ones close after their response (request_finished returns True).
            for connection, busy in self._busy.items():
                if not busy:
                    _cut(connection)
            while self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._connection_closed.wait(remaining)
            left = list(self._busy)
        for connection in left:
            _cut(connection)
        return not left


def _cut(connection: socket.socket) -> None:
    """Shuts a connection down so its handler thread's blocking read returns."""
    # OSError: the peer or the handler closed it first, which is already what we want.
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)


class SampleAppHandler(BaseHTTPRequestHandler):
    """Answers one connection's requests; see the module docstring for the endpoints."""

    server: SampleAppServer
    protocol_version = "HTTP/1.1"
    server_version = "pytest-canary-sample-app"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    # Responses go out in one write; without this, Nagle + delayed ACK can add 40 ms per request.
    disable_nagle_algorithm = True

    def handle(self) -> None:
        """Serves requests until the client or the server closes the connection."""
        late = self.server.connection_opened(self.connection)
        try:
            if late:
                # Accepted just before the listener closed: serve what was sent, then close.
                self.connection.settimeout(_LATE_REQUEST_TIMEOUT)
                self.handle_one_request()
                return
            self.close_connection = True
            self.handle_one_request()
            while not self.close_connection:
                self.handle_one_request()
        finally:
            self.server.connection_closed(self.connection)

    def handle_one_request(self) -> None:
        """Reads one request and answers it (BaseHTTPRequestHandler's, with busy tracking)."""
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except OSError:
            # Idle timeout, or drain() shut the connection down: just close it.
            self.close_connection = True
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        self.server.request_started(self.connection)
        try:
            if len(self.raw_requestline) > 65536:
                self.requestline = ""
                self.request_version = ""
                self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.parse_request():
                return  # parse_request answered with an error already
            if self.command in ("GET", "HEAD"):
                self._get()
            else:
                self._discard_body()
                self._send_json(
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    {
                        "error": f"method {self.command} not allowed: use GET or HEAD",
                        "version": self.server.config.version,
                    },
                    extra_headers={"Allow": "GET, HEAD"},
                )
        except OSError:
            self.close_connection = True  # the client went away mid-request
        finally:
            if self.server.request_finished(self.connection):
                self.close_connection = True

    def _discard_body(self) -> None:
        """Reads a request body we do not use, so the next request on the connection parses."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if 0 <= length <= _MAX_DISCARDED_BODY:
            self.rfile.read(length)
        else:
            self.close_connection = True

    def _get(self) -> None:
        config = self.server.config
        target = urlsplit(self.path)
        if target.path == "/health":
            self._send(HTTPStatus.OK, b"ok\n", _TEXT)
            return
        if target.path == "/relay":
            self._relay(target.query)
            return
        # Every other path can be faulted: delayed first, then perhaps answered with a 500.
        self.server.delays.wait()
        if self.server.faults.hit():
            self._send_json(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": "injected fault", "version": config.version},
            )
        elif target.path == "/version":
            self._send(HTTPStatus.OK, f"{config.version}\n".encode(), _TEXT)
        else:
            self._send_json(
                HTTPStatus.OK,
                {
                    "app": config.name,
                    "version": config.version,
                    "track": config.track,
                    "hostname": config.hostname,
                },
            )

    def _relay(self, query: str) -> None:
        config = self.server.config
        params = parse_qs(query, keep_blank_values=True)
        to = params.get("to", [""])[0]
        raw_calls = params.get("n", ["1"])[0]
        problem = None
        if not to:
            problem = "relay needs ?to=URL (an http:// or https:// URL)"
        else:
            try:
                _parse_relay_target(to)
            except ValueError as exc:
                problem = str(exc)
        calls = 0
        if problem is None:
            try:
                calls = int(raw_calls)
            except ValueError:
                calls = 0
            if not 1 <= calls <= RELAY_MAX_CALLS:
                problem = (
                    f"relay n={json.dumps(raw_calls)}: want an integer from 1 to {RELAY_MAX_CALLS}"
                )
        if problem is not None:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": problem, "version": config.version})
            return
        forwarded = {
            name[len(FORWARD_PREFIX) :]: value
            for name, value in self.headers.items()
            if name.lower().startswith(FORWARD_PREFIX) and len(name) > len(FORWARD_PREFIX)
        }
        result = relay(to, calls, forwarded)
        self._send_json(
            HTTPStatus.OK,
            {
                "from": config.version,
                "to": to,
                "n": calls,
                "seen": result.seen,
                "errors": result.errors,
            },
        )

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answers a protocol error (bad request line, header too long, ...) as JSON and closes."""
        status = HTTPStatus(code)
        self.close_connection = True
        self._send_json(
            status,
            {"error": message or status.phrase, "version": self.server.config.version},
        )

    def _send_json(
        self,
        status: HTTPStatus,
        body: dict[str, Any],
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        payload = json.dumps(body, separators=(",", ":")) + "\n"
        self._send(status, payload.encode(), _JSON, extra_headers)

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        """Writes the whole response in one write; HEAD gets the headers only."""
        lines = [
            f"HTTP/1.1 {status.value} {status.phrase}",
            f"Server: {self.server_version}",
            f"Date: {self.server.date_header.value()}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            f"X-App-Version: {self.server.config.version}",
        ]
        lines.extend(f"{name}: {value}" for name, value in (extra_headers or {}).items())
        if self.server.draining:
            self.close_connection = True
        if self.close_connection:
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")  # the client asked; say we agree
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if self.command == "HEAD" else head + body)

    def log_message(self, format: str, *args: Any) -> None:
        """Logs nothing: a per-request line on stderr costs throughput and says nothing useful."""


# --------------------------------------------------------------------------------------------
# Process entry point
# --------------------------------------------------------------------------------------------


class _StopSignals:
    """SIGTERM/SIGINT as something the main thread can wait for with a deadline.

    The handler only records the signal; ``signal.set_wakeup_fd`` wakes a ``select`` on a socket
    pair. (Setting a threading.Event from a handler can deadlock: the handler may run while the
    main thread holds the Event's internal lock.)
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: list[int] = []
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._reader.setblocking(False)
        self._previous_wakeup = signal.set_wakeup_fd(self._writer.fileno())
        self._previous_handlers = {
            signum: signal.signal(signum, self._record) for signum in self.SIGNALS
        }

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)

    def wait(self, timeout: float | None) -> bool:
        """Waits up to ``timeout`` seconds (None: forever); True if a stop signal arrived."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.received:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            readable, _, _ = select.select([self._reader], [], [], remaining)
            if readable:
                self._reader.recv(64)  # drain the wakeup bytes; the handler has run by now
        return True

    def close(self) -> None:
        """Restores the previous handlers and wakeup fd."""
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_wakeup)
        self._reader.close()
        self._writer.close()


def serve(config: AppConfig, stdout: TextIO | None = None) -> int:
    """Runs the app until SIGTERM or SIGINT, then drains; must run in the main thread.

    Prints exactly one line, ``listening on HOST:PORT`` (the bound port), once the socket
    listens.

    Args:
        config: The resolved configuration.
        stdout: Where the ``listening on`` line goes (default ``sys.stdout``).

    Returns:
        The exit status: 0 after a signal, whether or not the grace sufficed; 1 (with a message
        on stderr) if the address cannot be bound.
    """
    out = stdout if stdout is not None else sys.stdout
    stop = _StopSignals()
    try:
        if config.startup_delay > 0 and stop.wait(config.startup_delay):
            return 0
        try:
            server = SampleAppServer(config)
        except OSError as exc:
            print(
                f"sample_app: cannot listen on {config.host}:{config.port}: {exc}",
                file=sys.stderr,
            )
            return 1
        out.write(f"listening on {server.listen_address}\n")
        out.flush()
        accept_loop = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="sample-app-accept",
            daemon=True,
        )
        accept_loop.start()
        stop.wait(None)
        server.drain(config.shutdown_grace)
        accept_loop.join(timeout=1.0)
        return 0
    finally:
        stop.close()


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: resolve the configuration, serve, return the exit status.

    Returns:
        0 after a clean stop, 2 (with a message on stderr) for a configuration error, 1 if the
        address cannot be bound.
    """
    try:
        config = load_config(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as exc:
        print(f"sample_app: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
