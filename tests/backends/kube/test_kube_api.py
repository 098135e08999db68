"""API access: what the emulator cannot show -- ``exec`` over the kubernetes client's
websocket stream, bounded in size and time."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_canary.backends.kube.api import KubeApi
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
        api._api = lambda name: type("Core", (), {"connect_get_namespaced_pod_exec": None})()  # type: ignore[method-assign]
        return api

    return make


def test_exec_returns_stdout_and_stderr_as_they_came(api_with: Any) -> None:
    stream = FakeStream([(1, '[{"name": '), (2, "warning\n"), (1, '"a"}]\n')])
    assert api_with(stream).exec("pod", "ns", ["/dbg"]) == '[{"name": warning\n"a"}]\n'
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
