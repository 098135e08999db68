"""The sample app contract, checked against real processes of both implementations.

Every contract test runs twice: against ``python -m pytest_canary.sample_app`` and against the Go
app built from ``sample_app/go`` with ``go build`` (skipped when ``go`` is not on PATH). Processes
listen on 127.0.0.1 only, every wait has a deadline and every process, server and connection a
test starts is stopped by a fixture finalizer.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import pytest

from pytest_canary import sample_app

REPO_ROOT = Path(__file__).resolve().parents[1]
GO_SOURCE = REPO_ROOT / "sample_app" / "go"

START_TIMEOUT = 20.0
"""Seconds a process gets to print its ``listening on`` line (a cold interpreter on a busy CI)."""
STOP_TIMEOUT = 10.0
"""Seconds a process gets to exit after SIGTERM when nothing is in flight."""
HTTP_TIMEOUT = 15.0
"""Seconds for each request the tests send (relay calls inside take up to 5 s each)."""
GO_BUILD_TIMEOUT = 300.0

# Cleared from the environment of every app we start, so the runner's settings cannot leak in.
APP_VARIABLES = (
    "APP_VERSION",
    "APP_NAME",
    "APP_TRACK",
    "POD_NAME",
    "PORT",
    "HOST",
    "ERROR_RATE",
    "ERROR_SEED",
    "LATENCY_MS",
    "STARTUP_DELAY",
    "SHUTDOWN_GRACE",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
    "REQUEST_METHOD",
)

LISTENING_LINE = re.compile(r"^listening on 127\.0\.0\.1:(\d+)$")


# --------------------------------------------------------------------------------------------
# Helpers: HTTP answers, app processes, stdlib test servers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One HTTP response as the tests see it."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    port: int,
    path: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    connection: http.client.HTTPConnection | None = None,
) -> Answer:
    """Sends one request to 127.0.0.1:port, on ``connection`` if given (kept open) or a new one."""
    conn = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        if connection is None:
            conn.close()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Polls ``condition`` until it holds; fails the test naming ``what`` after ``timeout``."""
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting until {what}")
        time.sleep(0.02)


def refuses_connections(port: int) -> bool:
    """Whether nothing accepts on the port (refused, or reset by a listener closing meanwhile)."""
    try:
        probe = socket.create_connection(("127.0.0.1", port), timeout=2)
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    probe.close()
    return False


def free_port() -> int:
    """A port nothing listens on (bound and released; good enough for a refused connection)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningApp:
    """A started sample app process."""

    process: subprocess.Popen[str]
    stderr_path: Path
    port: int = 0
    listening_line: str = ""

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, **kwargs: Any) -> Answer:
        return request(self.port, path, **kwargs)

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def terminate(self) -> int:
        """Sends SIGTERM and returns the exit status (fails the test if it does not exit)."""
        __tracebackhide__ = True
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.process.args!r} did not exit {STOP_TIMEOUT:.0f}s after SIGTERM")


def _read_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)  # end of output: the process closed stdout (usually: it exited)


class AppLauncher:
    """Starts sample app processes of one implementation and stops all of them in ``close()``."""

    def __init__(self, kind: str, command: Sequence[str], workdir: Path) -> None:
        self.kind = kind
        self.command = list(command)
        self.workdir = workdir
        self._started: list[tuple[RunningApp, threading.Thread]] = []

    def environment(self, version: str | None, env: Mapping[str, str] | None) -> dict[str, str]:
        environment = {k: v for k, v in os.environ.items() if k not in APP_VARIABLES}
        if self.kind == "python":
            paths = [str(REPO_ROOT), environment.get("PYTHONPATH", "")]
            environment["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        if version is not None:
            environment["APP_VERSION"] = version
        environment.update(env or {})
        return environment

    def start(
        self,
        version: str | None = "v1",
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> RunningApp:
        """Starts the app on a free 127.0.0.1 port and waits for its ``listening on`` line."""
        __tracebackhide__ = True
        stderr_path = self.workdir / f"app-{len(self._started)}.stderr"
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                [*self.command, "--host", "127.0.0.1", "--port", "0", *args],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=self.environment(version, env),
            )
        assert process.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True)
        reader.start()
        app = RunningApp(process, stderr_path)
        self._started.append((app, reader))
        try:
            line = lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            pytest.fail(f"{self.kind} app printed nothing within {START_TIMEOUT:.0f}s")
        if line is None:
            process.wait(timeout=STOP_TIMEOUT)
            pytest.fail(
                f"{self.kind} app exited with status {process.returncode} before listening; "
                f"stderr:\n{app.stderr()}"
            )
        match = LISTENING_LINE.match(line)
        assert match, f"first stdout line {line!r} is not 'listening on 127.0.0.1:PORT'"
        app.listening_line = line
        app.port = int(match.group(1))
        return app

    def run_to_exit(
        self, version: str | None, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
    ) -> subprocess.CompletedProcess[str]:
        """Runs the app expecting it to exit by itself (configuration errors)."""
        return subprocess.run(
            [*self.command, "--host", "127.0.0.1", "--port", "0", *args],
            capture_output=True,
            text=True,
            env=self.environment(version, env),
            timeout=START_TIMEOUT,
            check=False,
        )

    def close(self) -> None:
        for app, reader in self._started:
            if app.process.poll() is None:
                app.process.send_signal(signal.SIGTERM)
                try:
                    app.process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    app.process.kill()
                    app.process.wait(timeout=STOP_TIMEOUT)
            reader.join(timeout=STOP_TIMEOUT)
            assert app.process.stdout is not None
            app.process.stdout.close()


@dataclass
class Seen:
    """A request a test server received."""

    path: str
    headers: dict[str, str]
    client_port: int


@dataclass
class ServerBehaviour:
    status: int = 200
    version: str | None = "rec"
    hold: bool = False
    routes: dict[str, int] = field(default_factory=dict)


class _TestHandler(BaseHTTPRequestHandler):
    server: StubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the test output is about the app

    def do_GET(self) -> None:
        server = self.server
        server.seen.append(
            Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, self.client_address[1])
        )
        if server.behaviour.routes:
            self._forward()
            return
        server.received.set()
        if server.behaviour.hold:
            server.release.wait(timeout=60)
        body = b"recorded\n"
        self.send_response(server.behaviour.status)
        if server.behaviour.version is not None:
            self.send_header("X-App-Version", server.behaviour.version)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self) -> None:
        """A forward proxy: absolute-form request line in, request to the mapped port out."""
        target = urlsplit(self.path)
        port = self.server.behaviour.routes.get(target.hostname or "")
        if port is None:
            self.send_error(502, f"no route for {target.hostname}")
            return
        path = f"{target.path or '/'}{'?' + target.query if target.query else ''}"
        upstream = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
        try:
            upstream.request("GET", path, headers=dict(self.headers.items()))
            response = upstream.getresponse()
            body = response.read()
        finally:
            upstream.close()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("connection", "content-length", "date", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class StubServer(ThreadingHTTPServer):
    """A stdlib HTTP server for the tests: a recording backend, a slow one or a forward proxy."""

    daemon_threads = True

    def __init__(self, behaviour: ServerBehaviour) -> None:
        self.behaviour = behaviour
        self.seen: list[Seen] = []
        self.received = threading.Event()
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), _TestHandler)
        self.thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stays quiet when the app under test hangs up (the grace tests cut it on purpose)."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()
        self.thread.join(timeout=STOP_TIMEOUT)


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoBuilds:
    """Go binaries: one configurable at run time (empty baked version), one baked ``v-baked``."""

    runtime_version: Path
    baked: Path


@pytest.fixture(scope="session")
def go_builds(tmp_path_factory: pytest.TempPathFactory) -> GoBuilds:
    """Builds sample_app/go twice with ``go build``; skips when Go is not installed."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("go not on PATH: install Go >= 1.19 to test the Go sample app (sample_app/go)")
    out = tmp_path_factory.mktemp("go-sample-app")
    builds = {"runtime_version": "", "baked": "v-baked"}
    paths = {}
    for name, baked in builds.items():
        binary = out / name
        env = {**os.environ, "CGO_ENABLED": "0"}
        result = subprocess.run(
            [go, "build", "-trimpath", "-ldflags", f"-s -w -X main.version={baked}", "-o", binary],
            cwd=GO_SOURCE,
            env=env,
            capture_output=True,
            text=True,
            timeout=GO_BUILD_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"go build failed ({result.returncode}):\n{result.stderr}")
        paths[name] = binary
    return GoBuilds(**paths)


@pytest.fixture(params=["python", "go"])
def launcher(request: pytest.FixtureRequest, tmp_path: Path) -> AppLauncher:
    """Starts apps of one implementation (both in turn); every process is stopped afterwards."""
    if request.param == "go":
        command = [str(request.getfixturevalue("go_builds").runtime_version)]
    else:
        command = [sys.executable, "-m", "pytest_canary.sample_app"]
    apps = AppLauncher(request.param, command, tmp_path)
    request.addfinalizer(apps.close)
    return apps


@pytest.fixture
def make_server(request: pytest.FixtureRequest) -> Callable[..., StubServer]:
    """Starts stdlib test servers on 127.0.0.1; each is shut down afterwards."""

    def make(**behaviour: Any) -> StubServer:
        server = StubServer(ServerBehaviour(**behaviour))
        request.addfinalizer(server.close)
        return server

    return make


# --------------------------------------------------------------------------------------------
# Endpoints
# --------------------------------------------------------------------------------------------


def assert_versioned(answer: Answer, version: str) -> None:
    __tracebackhide__ = True
    assert answer.headers["X-App-Version"] == version, dict(answer.headers)
    assert answer.headers["Content-Length"] == str(len(answer.body)), dict(answer.headers)


def test_root_reports_identity_and_version_header(launcher: AppLauncher) -> None:
    app = launcher.start(
        "v1", env={"APP_NAME": "shop", "APP_TRACK": "canary", "POD_NAME": "shop-canary-0"}
    )
    answer = app.get("/")
    assert answer.status == 200
    assert_versioned(answer, "v1")
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {
        "app": "shop",
        "version": "v1",
        "track": "canary",
        "hostname": "shop-canary-0",
    }


def test_identity_defaults(launcher: AppLauncher) -> None:
    answer = launcher.start("v1").get("/")
    assert answer.json() == {
        "app": "kubeapp",
        "version": "v1",
        "track": "stable",
        "hostname": socket.gethostname(),
    }


@pytest.mark.parametrize("path", ["/shop/x", "/shop/cart?id=7", "/healthz", "/version/extra"])
def test_any_other_path_answers_like_root(launcher: AppLauncher, path: str) -> None:
    app = launcher.start("v1", env={"POD_NAME": "pod-a"})
    answer = app.get(path)
    assert answer.status == 200
    assert_versioned(answer, "v1")
    assert answer.json() == {
        "app": "kubeapp",
        "version": "v1",
        "track": "stable",
        "hostname": "pod-a",
    }


def test_version_is_plain_text(launcher: AppLauncher) -> None:
    answer = launcher.start("2.4.1-canary").get("/version")
    assert answer.status == 200
    assert_versioned(answer, "2.4.1-canary")
    assert answer.headers["Content-Type"].startswith("text/plain")
    assert answer.body == b"2.4.1-canary\n"


def test_health_is_ok(launcher: AppLauncher) -> None:
    answer = launcher.start("v1").get("/health")
    assert answer.status == 200
    assert_versioned(answer, "v1")
    assert answer.body.strip() == b"ok"


def test_head_has_the_headers_of_get_and_no_body(launcher: AppLauncher) -> None:
    app = launcher.start("v1")
    get, head = app.get("/version"), app.get("/version", method="HEAD")
    assert head.status == 200
    assert head.body == b""
    assert head.headers["X-App-Version"] == "v1"
    assert head.headers["Content-Length"] == get.headers["Content-Length"] == "3"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405_and_keep_the_connection(launcher: AppLauncher, method: str) -> None:
    app = launcher.start("v1")
    connection = http.client.HTTPConnection("127.0.0.1", app.port, timeout=HTTP_TIMEOUT)
    try:
        refused = request(app.port, "/", method=method, body=b'{"x": 1}', connection=connection)
        after = request(app.port, "/version", connection=connection)
    finally:
        connection.close()
    assert refused.status == 405
    assert_versioned(refused, "v1")
    assert refused.headers["Allow"] == "GET, HEAD"
    assert "error" in refused.json()
    assert after.status == 200, "the body of the refused request must not corrupt the connection"
    assert after.body == b"v1\n"


def test_keep_alive_serves_many_requests_on_one_connection(launcher: AppLauncher) -> None:
    app = launcher.start("v1")
    connection = http.client.HTTPConnection("127.0.0.1", app.port, timeout=HTTP_TIMEOUT)
    try:
        answers = [request(app.port, "/", connection=connection) for _ in range(3)]
        first_socket = connection.sock
        answers += [request(app.port, "/shop", connection=connection) for _ in range(20)]
        assert connection.sock is first_socket, "the app closed a keep-alive connection"
    finally:
        connection.close()
    assert {a.status for a in answers} == {200}
    assert all(a.headers.get("Connection") != "close" for a in answers)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def test_port_zero_listens_on_a_free_port_and_prints_it(launcher: AppLauncher) -> None:
    app = launcher.start("v1")
    match = LISTENING_LINE.match(app.listening_line)
    assert match is not None
    assert int(match.group(1)) not in (0, 8080)
    assert app.get("/health").status == 200


def test_missing_version_exits_2_with_a_message(launcher: AppLauncher) -> None:
    result = launcher.run_to_exit(version=None)
    assert result.returncode == 2, result
    assert "APP_VERSION" in result.stderr
    assert "version" in result.stderr
    assert result.stdout == "", "nothing may look like a listening line"


def test_version_flag_wins_over_env(launcher: AppLauncher) -> None:
    app = launcher.start("from-env", args=["--version-label", "from-flag"])
    assert app.get("/version").body == b"from-flag\n"


def test_port_flag_wins_over_env(launcher: AppLauncher) -> None:
    # PORT=1 would need root; the flag --port 0 (added by start) must win.
    app = launcher.start("v1", env={"PORT": "1", "HOST": "192.0.2.1"})
    assert app.get("/health").status == 200


def test_go_baked_version_wins_over_env(go_builds: GoBuilds, tmp_path: Path) -> None:
    apps = AppLauncher("go", [str(go_builds.baked)], tmp_path)
    try:
        app = apps.start("from-env")
        assert app.get("/version").body == b"v-baked\n"
        assert app.get("/").headers["X-App-Version"] == "v-baked"
    finally:
        apps.close()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ERROR_RATE", "1.5"),
        ("ERROR_RATE", "lots"),
        ("LATENCY_MS", "-5"),
        ("LATENCY_MS", "150-50"),
        ("LATENCY_MS", "soon"),
        ("LATENCY_MS", "60001"),
        ("LATENCY_MS", "50-"),
        ("ERROR_SEED", "x"),
        ("STARTUP_DELAY", "-1"),
        ("SHUTDOWN_GRACE", "soon"),
    ],
)
def test_invalid_setting_exits_2_naming_it(
    launcher: AppLauncher, variable: str, value: str
) -> None:
    result = launcher.run_to_exit("v1", env={variable: value})
    assert result.returncode == 2, result
    assert variable in result.stderr and value in result.stderr, result.stderr


def test_invalid_port_exits_2_naming_it(launcher: AppLauncher) -> None:
    result = subprocess.run(
        [*launcher.command, "--host", "127.0.0.1"],
        capture_output=True,
        text=True,
        env=launcher.environment("v1", {"PORT": "http"}),
        timeout=START_TIMEOUT,
        check=False,
    )
    assert result.returncode == 2, result
    assert "PORT" in result.stderr and "http" in result.stderr, result.stderr


def test_startup_delay_postpones_listening(launcher: AppLauncher) -> None:
    started = time.monotonic()
    app = launcher.start("v1", env={"STARTUP_DELAY": "1"})
    assert time.monotonic() - started >= 1.0
    assert app.get("/health").status == 200


# --------------------------------------------------------------------------------------------
# Fault injection
# --------------------------------------------------------------------------------------------


def test_error_rate_1_faults_everything_but_health(launcher: AppLauncher) -> None:
    app = launcher.start("v9", env={"ERROR_RATE": "1"})
    for path in ("/", "/version", "/shop/x"):
        answer = app.get(path)
        assert answer.status == 500, path
        assert_versioned(answer, "v9")
        assert answer.json() == {"error": "injected fault", "version": "v9"}
    for _ in range(5):
        assert app.get("/health").status == 200


def test_seeded_error_rate_is_binomial(launcher: AppLauncher) -> None:
    """400 requests at ERROR_RATE=0.25 fault k ~ Binomial(400, 0.25) times.

    mean = 400 * 0.25 = 100, sigma = sqrt(400 * 0.25 * 0.75) = 8.66; we accept |k - 100| <= 5 sigma
    (43), which a correct app fails with probability < 1e-6 (and with a fixed seed, never
    flakily). An app ignoring ERROR_RATE (k = 0) or faulting everything (k = 400) fails.
    """
    requests_sent, rate = 400, 0.25
    app = launcher.start("v1", env={"ERROR_RATE": str(rate), "ERROR_SEED": "7"})
    connection = http.client.HTTPConnection("127.0.0.1", app.port, timeout=HTTP_TIMEOUT)
    paths = ["/", "/version", "/shop/x", "/health"]
    statuses: dict[str, list[int]] = {path: [] for path in paths}
    try:
        for i in range(requests_sent):
            path = paths[i % 3]
            statuses[path].append(request(app.port, path, connection=connection).status)
            statuses["/health"].append(request(app.port, "/health", connection=connection).status)
    finally:
        connection.close()
    faulted = sum(s == 500 for path in paths[:3] for s in statuses[path])
    mean, sigma = requests_sent * rate, math.sqrt(requests_sent * rate * (1 - rate))
    assert abs(faulted - mean) <= 5 * sigma, f"{faulted} faults in {requests_sent}, want ~{mean}"
    assert set(statuses["/health"]) == {200}
    assert all(s in (200, 500) for path in paths[:3] for s in statuses[path])


def timed_get(app: RunningApp, path: str) -> tuple[Answer, float]:
    started = time.monotonic()
    answer = app.get(path)
    return answer, time.monotonic() - started


def test_latency_ms_delays_every_faultable_answer_but_not_health(launcher: AppLauncher) -> None:
    """LATENCY_MS=600: "/", "/version" and an injected 500 each take at least 600 ms. /health
    is never delayed (a readiness probe must not wait): with LATENCY_MS at its largest, a
    minute, it still answers within a short client timeout."""
    app = launcher.start("v1", env={"LATENCY_MS": "600"})
    for path in ("/", "/version"):
        answer, took = timed_get(app, path)
        assert answer.status == 200 and took >= 0.6, (path, took)
    faulty = launcher.start("v2", env={"LATENCY_MS": "600", "ERROR_RATE": "1"})
    answer, took = timed_get(faulty, "/shop/x")
    assert answer.status == 500 and took >= 0.6, took
    assert_versioned(answer, "v2")
    slow = launcher.start("v3", env={"LATENCY_MS": "60000"})
    connection = http.client.HTTPConnection("127.0.0.1", slow.port, timeout=5)
    try:
        assert request(slow.port, "/health", connection=connection).status == 200
    finally:
        connection.close()


def test_latency_range_delays_at_least_its_low_end(launcher: AppLauncher) -> None:
    """LATENCY_MS=200-400: every answer waits at least 200 ms (the draw is uniform on
    [200, 400] ms; its spread is checked without timing by the next test)."""
    app = launcher.start("v1", env={"LATENCY_MS": "200-400", "ERROR_SEED": "3"})
    for _ in range(3):
        answer, took = timed_get(app, "/")
        assert answer.status == 200 and took >= 0.2, took


def test_delays_are_uniform_on_the_range_and_seeded() -> None:
    """The Python app's draws (the Go app uses its own generator, same contract): 2000 draws
    on [50, 150] ms stay in range, with mean within 5 standard errors of 100 (sd of a
    uniform on 100 ms is 28.9, standard error 0.65) and quartiles near 75/125; the same
    seed repeats them."""
    config = sample_app.load_config([], {"APP_VERSION": "v1", "LATENCY_MS": "50-150"})
    assert config.latency_ms == (50.0, 150.0)
    delays = sample_app._Delays(config.latency_ms, 7)
    draws = [delays.draw() for _ in range(2000)]
    assert all(50.0 <= d <= 150.0 for d in draws)
    assert abs(sum(draws) / len(draws) - 100.0) <= 5 * 28.87 / math.sqrt(2000)
    ordered = sorted(draws)
    assert 70 < ordered[500] < 80 and 120 < ordered[1500] < 130
    again = sample_app._Delays(config.latency_ms, 7)
    assert [again.draw() for _ in range(2000)] == draws
    fixed = sample_app.load_config([], {"APP_VERSION": "v1", "LATENCY_MS": "100"})
    assert fixed.latency_ms == (100.0, 100.0)
    assert sample_app._Delays(fixed.latency_ms, None).draw() == 100.0


def test_error_seed_makes_faults_reproducible(launcher: AppLauncher) -> None:
    env = {"ERROR_RATE": "0.5", "ERROR_SEED": "12345"}
    runs = []
    for _ in range(2):
        app = launcher.start("v1", env=env)
        runs.append([app.get("/").status for _ in range(40)])
        assert app.terminate() == 0
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 500}


# --------------------------------------------------------------------------------------------
# /relay
# --------------------------------------------------------------------------------------------


def test_relay_counts_the_versions_that_answered(launcher: AppLauncher) -> None:
    backend = launcher.start("v2")
    frontend = launcher.start("v1")
    answer = frontend.get(f"/relay?to={backend.url('/')}&n=5")
    assert answer.status == 200
    assert_versioned(answer, "v1")
    assert answer.json() == {
        "from": "v1",
        "to": backend.url("/"),
        "n": 5,
        "seen": {"v2": 5},
        "errors": 0,
    }


def test_relay_n_defaults_to_1(launcher: AppLauncher) -> None:
    backend = launcher.start("v2")
    answer = launcher.start("v1").get(f"/relay?to={backend.url('/version')}")
    assert answer.json()["n"] == 1
    assert answer.json()["seen"] == {"v2": 1}


def test_relay_counts_refused_faulted_and_unversioned_answers_as_errors(
    launcher: AppLauncher, make_server: Callable[..., StubServer]
) -> None:
    faulty = launcher.start("v2", env={"ERROR_RATE": "1"})
    unversioned = make_server(version=None)
    not_found = make_server(status=404, version="v3")
    frontend = launcher.start("v1")
    targets = [
        f"http://127.0.0.1:{free_port()}/",
        faulty.url("/"),
        unversioned.url(),
        not_found.url(),
    ]
    for target in targets:
        result = frontend.get(f"/relay?to={target}&n=3").json()
        assert (result["seen"], result["errors"]) == ({}, 3), target
    assert faulty.get("/health").status == 200


def test_relay_keeps_one_connection_per_call(
    launcher: AppLauncher, make_server: Callable[..., StubServer]
) -> None:
    backend = make_server(version="rec")
    result = launcher.start("v1").get(f"/relay?to={backend.url('/a?b=c')}&n=6").json()
    assert result["seen"] == {"rec": 6}
    assert [seen.path for seen in backend.seen] == ["/a?b=c"] * 6
    assert len({seen.client_port for seen in backend.seen}) == 1, "one connection for all calls"


def test_relay_forwards_canary_headers_without_the_prefix(
    launcher: AppLauncher, make_server: Callable[..., StubServer]
) -> None:
    backend = make_server(version="rec")
    frontend = launcher.start("v1")
    answer = frontend.get(
        f"/relay?to={backend.url()}&n=2",
        headers={
            "X-Canary-Forward-canary": "canary-tester",
            "x-canary-forward-X-User": "alice",
            "X-Canary-Forward-Host": "shop.example",
            "X-Not-Forwarded": "nope",
        },
    )
    assert answer.json()["seen"] == {"rec": 2}
    for seen in backend.seen:
        assert seen.headers["canary"] == "canary-tester"
        assert seen.headers["x-user"] == "alice"
        assert seen.headers["host"] == "shop.example"
        assert "x-not-forwarded" not in seen.headers
        assert not [name for name in seen.headers if name.startswith("x-canary-forward")]


def test_relay_goes_through_http_proxy(
    launcher: AppLauncher, make_server: Callable[..., StubServer]
) -> None:
    backend = launcher.start("v2")
    proxy = make_server(routes={"backend.test": backend.port})
    frontend = launcher.start("v1", env={"HTTP_PROXY": proxy.url("")})
    answer = frontend.get(
        "/relay?to=http://backend.test/shop?item=1&n=4",
        headers={"X-Canary-Forward-canary": "always"},
    )
    assert answer.json()["seen"] == {"v2": 4}, answer.json()
    assert [seen.path for seen in proxy.seen] == ["http://backend.test/shop?item=1"] * 4
    assert {seen.headers["host"] for seen in proxy.seen} == {"backend.test"}
    assert {seen.headers["canary"] for seen in proxy.seen} == {"always"}


def test_relay_honours_lowercase_http_proxy(
    launcher: AppLauncher, make_server: Callable[..., StubServer]
) -> None:
    backend = launcher.start("v2")
    proxy = make_server(routes={"backend.test": backend.port})
    frontend = launcher.start("v1", env={"http_proxy": f"127.0.0.1:{proxy.port}"})
    answer = frontend.get("/relay?to=http://backend.test/&n=2")
    assert answer.json()["seen"] == {"v2": 2}
    assert len(proxy.seen) == 2


def test_relay_never_proxies_loopback_or_no_proxy_hosts(
    launcher: AppLauncher, make_server: Callable[..., StubServer]
) -> None:
    backend = launcher.start("v2")
    proxy = make_server(routes={"backend.test": backend.port})
    frontend = launcher.start(
        "v1", env={"HTTP_PROXY": proxy.url(""), "NO_PROXY": "example.com,backend.test"}
    )
    direct = frontend.get(f"/relay?to={backend.url()}&n=2").json()
    assert direct["seen"] == {"v2": 2}
    exempt = frontend.get("/relay?to=http://backend.test/&n=1").json()
    assert exempt["errors"] == 1, "backend.test does not resolve, so only the proxy could answer"
    assert proxy.seen == []


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?n=3",
        "?to=",
        "?to=ftp://example.com/",
        "?to=not-a-url",
        "?to=http:///no-host",
        "?to=http://example.com:port/",
        "?to=http://127.0.0.1:9/&n=0",
        "?to=http://127.0.0.1:9/&n=1001",
        "?to=http://127.0.0.1:9/&n=two",
    ],
)
def test_relay_rejects_bad_parameters_with_400(launcher: AppLauncher, query: str) -> None:
    answer = launcher.start("v1").get(f"/relay{query}")
    assert answer.status == 400, answer.body
    assert_versioned(answer, "v1")
    assert answer.json()["version"] == "v1"
    assert "relay" in answer.json()["error"]


# --------------------------------------------------------------------------------------------
# Graceful shutdown
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_exits_0_without_waiting_for_idle_connections(
    launcher: AppLauncher, stop_signal: signal.Signals
) -> None:
    app = launcher.start("v1", env={"SHUTDOWN_GRACE": "60"})
    idle = http.client.HTTPConnection("127.0.0.1", app.port, timeout=HTTP_TIMEOUT)
    try:
        assert request(app.port, "/", connection=idle).status == 200
        app.process.send_signal(stop_signal)
        # Exiting well before the 60 s grace shows the idle keep-alive connection did not hold it.
        assert app.process.wait(timeout=STOP_TIMEOUT) == 0
    finally:
        idle.close()
    assert refuses_connections(app.port)


def call_in_background(call: Callable[[], Answer]) -> tuple[threading.Thread, queue.Queue[Any]]:
    """Runs ``call`` in a thread; its answer or exception arrives on the queue."""
    outcome: queue.Queue[Any] = queue.Queue()

    def run() -> None:
        try:
            outcome.put(call())
        except BaseException as exc:  # handed to the test thread, which decides
            outcome.put(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_sigterm_lets_the_in_flight_request_finish(
    launcher: AppLauncher, make_server: Callable[..., StubServer]
) -> None:
    slow = make_server(version="slow", hold=True)
    app = launcher.start("v1", env={"SHUTDOWN_GRACE": "30"})
    idle = http.client.HTTPConnection("127.0.0.1", app.port, timeout=HTTP_TIMEOUT)
    caller: threading.Thread | None = None
    try:
        assert request(app.port, "/", connection=idle).status == 200
        caller, outcome = call_in_background(lambda: app.get(f"/relay?to={slow.url()}&n=1"))
        assert slow.received.wait(timeout=HTTP_TIMEOUT), "the relay never reached the slow server"
        app.process.send_signal(signal.SIGTERM)

        wait_until(lambda: refuses_connections(app.port), STOP_TIMEOUT, "the listener closed")
        assert idle.sock is not None
        idle.sock.settimeout(STOP_TIMEOUT)
        assert idle.sock.recv(1) == b"", "the idle keep-alive connection was not closed"
        assert app.process.poll() is None, "the app exited with a request in flight"

        slow.release.set()
        answer = outcome.get(timeout=HTTP_TIMEOUT)
        if isinstance(answer, BaseException):
            raise answer
        assert answer.status == 200
        assert answer.json()["seen"] == {"slow": 1}
        assert answer.headers["Connection"] == "close"
        assert app.process.wait(timeout=STOP_TIMEOUT) == 0
    finally:
        idle.close()
        slow.release.set()
        if caller is not None:
            caller.join(timeout=HTTP_TIMEOUT)


def test_sigterm_exits_0_when_the_grace_runs_out(
    launcher: AppLauncher, make_server: Callable[..., StubServer]
) -> None:
    slow = make_server(version="slow", hold=True)
    app = launcher.start("v1", env={"SHUTDOWN_GRACE": "0.5"})
    caller, outcome = call_in_background(lambda: app.get(f"/relay?to={slow.url()}&n=1"))
    try:
        assert slow.received.wait(timeout=HTTP_TIMEOUT), "the relay never reached the slow server"
        started = time.monotonic()
        assert app.terminate() == 0
        assert time.monotonic() - started < 0.5 + STOP_TIMEOUT / 2
        cut = outcome.get(timeout=HTTP_TIMEOUT)
        assert isinstance(cut, (OSError, http.client.HTTPException)), cut
    finally:
        slow.release.set()
        caller.join(timeout=HTTP_TIMEOUT)


# --------------------------------------------------------------------------------------------
# Python-only pieces
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "exempt"),
    [
        ("backend.test", 80, "", False),
        ("backend.test", 80, "*", True),
        ("backend.test", 80, "backend.test", True),
        ("api.backend.test", 80, "backend.test", True),
        ("api.backend.test", 80, ".backend.test", True),
        ("backend.test", 80, ".backend.test", False),
        ("backend.test", 80, "*.backend.test", False),
        ("api.backend.test", 80, "*.backend.test", True),
        ("xbackend.test", 80, "backend.test", False),
        ("backend.test", 8080, "backend.test:80", False),
        ("backend.test", 80, " other.test , backend.test:80 ", True),
        ("10.1.2.3", 80, "10.0.0.0/8", True),
        ("10.1.2.3", 80, "10.1.2.3", True),
        ("10.1.2.4", 80, "10.1.2.3", False),
        ("fd00::1", 80, "[fd00::1]:80", True),
    ],
)
def test_no_proxy_follows_go_rules(host: str, port: int, no_proxy: str, exempt: bool) -> None:
    assert sample_app._no_proxy_matches(host, port, no_proxy) is exempt


def test_config_resolution_names_the_source() -> None:
    with pytest.raises(sample_app.ConfigError, match=r"--port='x'"):
        sample_app.load_config(["--port", "x"], {"APP_VERSION": "v1"})
    with pytest.raises(sample_app.ConfigError, match=r"PORT='99999' from the environment"):
        sample_app.load_config([], {"APP_VERSION": "v1", "PORT": "99999"})
    config = sample_app.load_config([], {"APP_VERSION": "v1", "PORT": "", "HOST": ""})
    assert (config.port, config.host) == (8080, "0.0.0.0")
