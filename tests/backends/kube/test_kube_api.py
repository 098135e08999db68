"""API access: what the emulator cannot show -- ``exec`` over the kubernetes client's
websocket stream, bounded in size and time."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from conftest import ApiServer
from pytest_canary.backends.kube.api import ExecOutput, KubeApi
from pytest_canary.errors import BackendError


class FakeStream:
    """``kubernetes.stream.ws_client.WSClient``'s reading side: frames arrive per update()."""

    def __init__(self, frames: list[tuple[int, str]], *, close_after: bool = True) -> None:
        self.frames = list(frames)
        self.channels: dict[int, str] = {}
        self.open = True
        self.close_after = close_after
        self.closed = False

    def update(self, timeout: float = 0) -> None:
        if self.frames:
            channel, data = self.frames.pop(0)
            self.channels[channel] = self.channels.get(channel, "") + data
        elif self.close_after:
            self.open = False

    def read_channel(self, channel: int, timeout: float = 0) -> str:
        return self.channels.pop(channel, "")

    def is_open(self) -> bool:
        return self.open

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def api_with(monkeypatch: pytest.MonkeyPatch) -> Any:
    def make(stream: FakeStream, request_timeout: float = 5.0) -> KubeApi:
        import kubernetes.stream

        monkeypatch.setattr(kubernetes.stream, "stream", lambda *args, **kwargs: stream)
        api = KubeApi.__new__(KubeApi)
        api.request_timeout = request_timeout
        api._exec_lock = threading.Lock()
        api._exec_core = type("Core", (), {"connect_get_namespaced_pod_exec": None})()
        return api

    return make


def test_exec_keeps_stdout_and_stderr_apart(api_with: Any) -> None:
    stream = FakeStream([(1, '[{"name": '), (2, "warning\n"), (1, '"a"}]\n')])
    assert api_with(stream).exec("pod", "ns", ["/dbg"]) == ExecOutput(
        '[{"name": "a"}]\n', "warning\n"
    )  # a warning on stderr never lands inside the JSON
    assert stream.closed


def test_exec_output_has_a_bound(api_with: Any) -> None:
    stream = FakeStream([(1, "x" * 600), (1, "x" * 600)])
    with pytest.raises(BackendError, match=r"printed more than 1000 bytes"):
        api_with(stream).exec("pod", "ns", ["cat"], limit=1000)
    assert stream.closed


def test_exec_has_a_deadline(api_with: Any) -> None:
    stream = FakeStream([], close_after=False)
    with pytest.raises(TimeoutError, match="did not finish within 0s"):
        api_with(stream, request_timeout=0.2).exec("pod", "ns", ["sleep"])
    assert stream.closed


def test_exec_never_borrows_the_client_other_threads_call_through(
    api_server: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kubernetes/stream/stream.py ``_websocket_request`` replaces ``api_client.call_api``
    with a websocket call while it opens the stream. A call another thread makes through the
    same client meanwhile (the lease renewal) must still reach the API server."""
    import kubernetes.stream

    api = api_server.api()
    in_window, other_done = threading.Event(), threading.Event()

    def stream(api_method: Any, *args: Any, **kwargs: Any) -> FakeStream:
        client = api_method.__self__.api_client
        previous = client.call_api

        def websocket_call(*a: Any, **k: Any) -> Any:
            raise AssertionError("a plain API call went through the exec websocket")

        client.call_api = websocket_call
        try:
            in_window.set()
            assert other_done.wait(30)
            return FakeStream([(1, "[]")])
        finally:
            client.call_api = previous

    monkeypatch.setattr(kubernetes.stream, "stream", stream)
    failures: list[BaseException] = []

    def renew() -> None:
        try:
            assert in_window.wait(30)
            api.list("v1", "Namespace")
        except BaseException as exc:
            failures.append(exc)
        finally:
            other_done.set()

    other = threading.Thread(target=renew)
    other.start()
    try:
        assert api.exec("controller-0", "ingress-nginx", ["/dbg"]).stdout == "[]"
    finally:
        other.join(30)
        api.close()
    assert failures == []
