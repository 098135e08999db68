"""What each data plane does with requests and answers beyond its limits, by default.

The local routers apply these, so a hostile client or a misbehaving pod meets the answer
the real proxy would give (a status the sampler counts as an error), never a crash:

- **ingress-nginx** (kubernetes/ingress-nginx controller-v1.15.1):
  ``proxy-body-size`` defaults to ``1m`` (``internal/ingress/controller/config/config.go``
  ``bodySize``), rendered as ``client_max_body_size`` in ``nginx.tmpl``: a larger request
  body is answered **413** by nginx itself. ``proxy-buffer-size`` defaults to ``4k``
  (config.go ``ProxyBufferSize``): an upstream status line and headers that do not fit are
  "upstream sent too big header" → **502**. An upstream answer nginx cannot parse (bad status
  line, header without colon, HTTP/0.9, broken chunking, a body shorter than its
  Content-Length) is "upstream sent invalid header" / "upstream prematurely closed
  connection" → **502**. ``large-client-header-buffers`` ``4 8k`` bounds a request header
  line at 8 KiB (nginx answers 400).
- **Envoy** (Istio 1.30 gateways and sidecars, Gateway API on Istio): request bodies are
  streamed to the upstream (the HTTP connection manager has no body limit unless a filter
  buffers; Istio installs none that does on plain routes), so a large body reaches the pod.
  Upstream headers are limited by ``max_response_headers_kb`` (default 60 KiB) and
  ``max_headers_count`` (default 100) of ``HttpProtocolOptions``; an upstream answer the
  codec refuses is ``UPE`` "upstream connect error or disconnect/reset before headers. reset
  reason: protocol error" → **502**.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class ProxyLimits:
    """The limits of one data plane's proxy.

    Attributes:
        name: the data plane, for messages.
        max_request_body: bytes of request body accepted; larger -> 413. ``None``: the
            body is streamed to the upstream whatever its size.
        max_response_header_bytes: bytes of upstream status line + headers accepted.
        max_response_headers: number of upstream headers accepted (``None``: no count limit).
        too_big_header: the proxy's reason for an oversized upstream header block.
        bad_upstream: the proxy's reason for an upstream answer it cannot parse.
    """

    name: str
    max_request_body: int | None
    max_response_header_bytes: int
    max_response_headers: int | None
    too_big_header: str
    bad_upstream: str


NGINX = ProxyLimits(
    name="ingress-nginx",
    max_request_body=1 * MIB,  # proxy-body-size "1m" -> client_max_body_size
    max_response_header_bytes=4096,  # proxy-buffer-size "4k" -> proxy_buffer_size
    max_response_headers=None,
    too_big_header="upstream sent too big header while reading response header from upstream",
    bad_upstream="upstream sent invalid header or prematurely closed connection",
)

ENVOY = ProxyLimits(
    name="Envoy",
    max_request_body=None,
    max_response_header_bytes=60 * 1024,  # max_response_headers_kb default 60
    max_response_headers=100,  # max_headers_count default 100
    too_big_header="upstream connect error or disconnect/reset before headers. reset reason: "
    "protocol error (headers over max_response_headers_kb)",
    bad_upstream="upstream connect error or disconnect/reset before headers. reset reason: "
    "protocol error",
)


def limits_for(model: str) -> ProxyLimits:
    """The limits of the proxy behind a router kind: ``nginx`` -> ingress-nginx, anything
    else (``istio:..``, ``gateway:..``, ``mesh``) -> Envoy."""
    return NGINX if model.partition(":")[0] == "nginx" else ENVOY
