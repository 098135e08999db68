"""A Kubernetes API over real HTTP for the kube backend's contract tests.

``kmock.KubernetesEmulator`` (kmock 0.8) stores objects and serves create / read / patch /
delete / list on any resource path. The real API server does a few things more that the kube
backend relies on; :class:`ApiServer` adds exactly those, each written down here:

- server-side apply: ``PATCH`` with ``application/apply-patch+yaml`` creates a missing object
  and replaces the fields of its manager (one manager here: the whole object); it requires
  ``fieldManager``; ``metadata.generation`` grows when ``spec`` changes;
- namespaces: kmock 0.8 cannot parse ``/api/v1/namespaces[/name]`` (it reads "namespaces" as
  the namespace marker), so they are served here; deleting one deletes everything in it;
- ``labelSelector`` on lists (equality terms), NodePort allocation (a taken port is a 422
  "provided port is already allocated");
- controllers: Deployments report a finished rollout (unless :attr:`ApiServer.stalled`) and
  own Ready pods named ``<deployment>-<template hash>-<n>``; EndpointSlices list the ready
  pods each Service selects.

:class:`FakeIngress` is the data plane: an HTTP server that routes each request with the
ingress-nginx model of :mod:`pytest_canary.dataplane.nginx` over the objects the API server
held ``lag`` seconds ago (or a frozen snapshot), and answers as the sample app of the chosen
pod would (``X-App-Version``, JSON ``hostname``).
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import hashlib
import http.server
import importlib.resources
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web
import attrs
import kmock
import pytest

from pytest_canary.backends.kube import EntryPoints, KubeApi, KubeBackend, KubeOptions
from pytest_canary.dataplane import nginx as nginx_model
from pytest_canary.dataplane.request import Destination, RoutedRequest

APPLY = "application/apply-patch+yaml"
NAMESPACES = re.compile(r"^/api/v1/namespaces(?:/(?P<name>[^/]+))?/?$")
OBJECT = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)/(?P<name>[^/]+)$"
)
SERVER_FIELDS = ("uid", "resourceVersion", "generation", "creationTimestamp")
EMULATED = "emulator/owned"  # pods the emulated Deployment controller made


@dataclass(frozen=True)
class Call:
    """One request the API server received."""

    method: str
    path: str
    params: dict[str, str]
    content_type: str
    body: Any

    @property
    def is_write(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    """kmock's emulator plus server-side apply, namespaces and tiny controllers."""

    calls: list[Call] = attrs.field(factory=list)
    namespaces: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    stalled: set[str] = attrs.field(factory=set)
    failures: list[tuple[re.Pattern[str], int, str]] = attrs.field(factory=list)
    snapshots: list[tuple[float, list[dict[str, Any]]]] = attrs.field(factory=list)
    snapshot_lock: threading.Lock = attrs.field(factory=threading.Lock)
    version: dict[str, str] = attrs.field(
        factory=lambda: {"major": "1", "minor": "35", "gitVersion": "v1.35.0"}
    )
    _serial: int = 0

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        body_bytes = await raw_request.read()
        try:
            body = json.loads(body_bytes) if body_bytes else None
        except ValueError:
            body = body_bytes.decode()
        call = Call(
            raw_request.method,
            raw_request.path,
            dict(raw_request.query),
            raw_request.headers.get("Content-Type", ""),
            body,
        )
        self.calls.append(call)
        for index, (pattern, status, message) in enumerate(self.failures):
            if call.is_write and pattern.search(f"{call.method} {call.path}"):
                del self.failures[index]
                return _status(status, message)
        if raw_request.path == "/version":
            return aiohttp.web.json_response(self.version)
        namespace_match = NAMESPACES.match(raw_request.path)
        if namespace_match:
            return self._namespace(call, namespace_match.group("name"))
        object_match = OBJECT.match(raw_request.path)
        if raw_request.method == "PATCH" and object_match:
            response = self._apply(call, object_match)
            self._reconcile()
            return response
        response = await super().__call__(raw_request)
        if call.is_write:
            self._reconcile()
        return response

    # -- server-side apply ------------------------------------------------------------------

    def _apply(self, call: Call, match: re.Match[str]) -> aiohttp.web.StreamResponse:
        if not call.content_type.startswith(APPLY):
            return _status(415, f"the emulator only serves apply patches, not {call.content_type}")
        if not call.params.get("fieldManager"):
            return _status(400, "PATCH: fieldManager is required for apply requests")
        namespace, name = match.group("ns"), match.group("name")
        if namespace not in self.namespaces:
            return _status(404, f'namespaces "{namespace}" not found')
        group = match.group("group") or ""
        version = match.group("core") or match.group("version")
        resource = kmock.resource(group, version, match.group("plural"))
        desired = copy.deepcopy(call.body)
        desired.setdefault("metadata", {})["namespace"] = namespace
        if match.group("plural") == "services":
            problem = self._allocate_node_ports(namespace, name, desired)
            if problem:
                return _status(422, problem)
        key = (resource, namespace, name)
        try:
            existing = self.objects[key]
        except KeyError:
            existing = None
        if existing is None or existing.deleted:
            self._serial += 1
            desired["metadata"].update(
                uid=f"uid-{self._serial}",
                resourceVersion=str(self._serial),
                generation=1,
                creationTimestamp="2026-01-01T00:00:00Z",
            )
            if call.params.get("dryRun") != "All":
                self.objects[key] = desired
            return aiohttp.web.json_response(desired, status=201)
        current = existing.raw
        kept = {k: current["metadata"][k] for k in SERVER_FIELDS if k in current["metadata"]}
        if desired.get("spec") != current.get("spec"):
            kept["generation"] = int(kept.get("generation", 1)) + 1
        self._serial += 1
        kept["resourceVersion"] = str(self._serial)
        desired["metadata"].update(kept)
        if "status" in current:
            desired["status"] = copy.deepcopy(current["status"])
        if call.params.get("dryRun") != "All":
            existing.create(desired)
        return aiohttp.web.json_response(desired)

    def _allocate_node_ports(self, namespace: str, name: str, service: dict[str, Any]) -> str:
        spec = service.get("spec") or {}
        if spec.get("type") != "NodePort":
            return ""
        taken = {
            int(port["nodePort"])
            for (res, ns, other), obj in self.objects.items()
            if res.plural == "services" and not obj.deleted and (ns, other) != (namespace, name)
            for port in (obj.raw.get("spec") or {}).get("ports") or []
            if port.get("nodePort")
        }
        for port in spec.get("ports") or []:
            if port.get("nodePort") in taken:
                return (
                    f'Service "{name}" is invalid: spec.ports[0].nodePort: Invalid value: '
                    f"{port['nodePort']}: provided port is already allocated"
                )
            if not port.get("nodePort"):
                port["nodePort"] = next(p for p in range(30000, 32768) if p not in taken)
        return ""

    # -- namespaces -------------------------------------------------------------------------

    def _namespace(self, call: Call, name: str | None) -> aiohttp.web.StreamResponse:
        if name is None:
            items = [n for n in self.namespaces.values() if _selected(n, call.params)]
            return aiohttp.web.json_response({"items": items})
        if call.method == "GET":
            if name not in self.namespaces:
                return _status(404, f'namespaces "{name}" not found')
            return aiohttp.web.json_response(self.namespaces[name])
        if call.method == "PATCH":
            if not call.params.get("fieldManager"):
                return _status(400, "PATCH: fieldManager is required for apply requests")
            created = name not in self.namespaces
            self.namespaces[name] = copy.deepcopy(call.body)
            return aiohttp.web.json_response(self.namespaces[name], status=201 if created else 200)
        if call.method == "DELETE":
            if name not in self.namespaces:
                return _status(404, f'namespaces "{name}" not found')
            gone = self.namespaces.pop(name)
            for (_, namespace, _), obj in list(self.objects.items()):
                if namespace == name and not obj.deleted:
                    obj.delete()
            self._reconcile()
            return aiohttp.web.json_response(gone)
        return _status(405, f"{call.method} on namespaces")

    # -- lists --------------------------------------------------------------------------------

    async def _serve_list(self, request: kmock.Request) -> Any:
        listing = await super()._serve_list(request)
        listing["items"] = [i for i in listing["items"] if _selected(i, request.params)]
        return listing

    # -- controllers --------------------------------------------------------------------------

    def live(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Objects of a resource (by plural) that exist now."""
        return [
            obj.raw
            for (res, ns, _), obj in self.objects.items()
            if res.plural == plural and not obj.deleted and (namespace is None or ns == namespace)
        ]

    def _reconcile(self) -> None:
        pods_resource = kmock.resource("", "v1", "pods")
        slices_resource = kmock.resource("discovery.k8s.io", "v1", "endpointslices")
        wanted_pods: dict[tuple[str, str], dict[str, Any]] = {}
        for (res, namespace, name), obj in list(self.objects.items()):
            if res.plural != "deployments" or obj.deleted:
                continue
            dep = obj.raw
            spec = dep.get("spec") or {}
            replicas = int(spec.get("replicas", 1))
            if name in self.stalled:
                continue
            template = spec.get("template") or {}
            digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:8]
            labels = dict((template.get("metadata") or {}).get("labels") or {})
            for index in range(replicas):
                pod_name = f"{name}-{digest}-{index}"
                wanted_pods[(namespace, pod_name)] = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": pod_name,
                        "namespace": namespace,
                        "labels": labels,
                        "annotations": {EMULATED: "true"},
                    },
                    "spec": {"containers": [{"name": "app"}], "nodeName": "emulated"},
                    "status": {
                        "phase": "Running",
                        "podIP": f"10.0.0.{index + 1}",
                        "conditions": [{"type": "Ready", "status": "True"}],
                    },
                }
            obj.last["status"] = {
                "observedGeneration": (dep.get("metadata") or {}).get("generation", 1),
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
            }
        for (res, namespace, name), obj in list(self.objects.items()):
            if (
                res.plural == "pods"
                and not obj.deleted
                and (namespace, name) not in wanted_pods
                and ((obj.raw.get("metadata") or {}).get("annotations") or {}).get(EMULATED)
            ):
                obj.delete()  # only the pods the emulated Deployments own
        for (namespace, name), pod in wanted_pods.items():
            key = (pods_resource, namespace, name)
            if key not in self.objects or self.objects[key].deleted:
                self.objects[key] = pod
        for (res, namespace, name), obj in list(self.objects.items()):
            if res.plural != "services" or obj.deleted:
                continue
            selector = (obj.raw.get("spec") or {}).get("selector") or {}
            if not selector:
                continue
            endpoints = [
                {
                    "addresses": [pod["status"]["podIP"]],
                    "conditions": {"ready": True},
                    "targetRef": {"kind": "Pod", "name": pod["metadata"]["name"]},
                }
                for (ns, _), pod in sorted(wanted_pods.items())
                if ns == namespace
                and all(pod["metadata"]["labels"].get(k) == v for k, v in selector.items())
            ]
            key = (slices_resource, namespace, f"{name}-slice")
            self.objects[key] = {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-slice",
                    "namespace": namespace,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "endpoints": endpoints,
            }
        for (res, namespace, name), obj in list(self.objects.items()):
            if res.plural == "endpointslices" and not obj.deleted:
                service = name.removesuffix("-slice")
                if not any(
                    r.plural == "services" and ns == namespace and n == service and not o.deleted
                    for (r, ns, n), o in self.objects.items()
                ):
                    obj.delete()
        snapshot = copy.deepcopy([o.raw for (_, _, _), o in self.objects.items() if not o.deleted])
        with self.snapshot_lock:
            self.snapshots.append((time.monotonic(), snapshot))
            del self.snapshots[:-50]

    def snapshot(self, lag: float) -> list[dict[str, Any]]:
        """The objects as they were ``lag`` seconds ago (the oldest known if older)."""
        with self.snapshot_lock:
            cutoff = time.monotonic() - lag
            older = [objects for at, objects in self.snapshots if at <= cutoff]
            if older:
                return older[-1]
            return self.snapshots[0][1] if self.snapshots else []


def _selected(obj: dict[str, Any], params: Any) -> bool:
    """Whether an object matches the request's ``labelSelector`` (equality terms and
    ``key!=value``)."""
    selector = params.get("labelSelector") if params else None
    if not selector:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in selector.split(","):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        else:
            key, value = term.split("=", 1)
            if labels.get(key) != value:
                return False
    return True


def _status(code: int, message: str) -> aiohttp.web.Response:
    reasons = {400: "BadRequest", 404: "NotFound", 422: "Invalid", 500: "InternalError"}
    return aiohttp.web.json_response(
        {
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "message": message,
            "reason": reasons.get(code, "Unknown"),
            "code": code,
        },
        status=code,
    )


class ApiServer:
    """The emulator on 127.0.0.1 in a thread of its own, for the synchronous real client."""

    def __init__(self, *, istio: bool = True, gateway_api: bool = True) -> None:
        """Args: istio, gateway_api: serve those API groups (their CRDs installed)."""
        self.emulator = ClusterEmulator()
        # The built-in resources kmock ships (its load_bundled() uses a deprecated
        # importlib.resources call, an error under filterwarnings=error).
        bundled = importlib.resources.files("kmock._internal").joinpath("resources.json.gz")
        self.emulator.resources.load_data(gzip.decompress(bundled.read_bytes()))
        if istio:
            for plural in ("virtualservices", "destinationrules", "gateways"):
                self.emulator.resources[f"networking.istio.io/v1/{plural}"]
        if gateway_api:
            for plural in ("httproutes", "gateways"):
                self.emulator.resources[f"gateway.networking.k8s.io/v1/{plural}"]
        else:  # kmock's bundle knows the Gateway API kinds: a cluster without the CRDs
            for key in [k for k in self.emulator.resources if "gateway.networking" in str(k)]:
                self.emulator.resources.pop(key)
        self.url = ""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="api-emulator", daemon=True)

    def _run(self) -> None:
        async def serve() -> None:
            self._stop = asyncio.Event()
            async with self.emulator, kmock.Server(self.emulator) as server:
                self.url = str(server.url).rstrip("/")
                self._ready.set()
                await self._stop.wait()

        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    def start(self) -> ApiServer:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None or not self.url:
            raise RuntimeError(f"the API emulator did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def api(self) -> KubeApi:
        """The kube backend's API wrapper on the real ``kubernetes`` client."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        return KubeApi(client.ApiClient(configuration), request_timeout=5.0)

    @property
    def calls(self) -> list[Call]:
        return self.emulator.calls

    def writes(self, since: int = 0) -> list[Call]:
        """Mutating requests from index ``since`` on (the backend's own, not controllers')."""
        return [c for c in self.emulator.calls[since:] if c.is_write]

    def put(self, obj: dict[str, Any], plural: str) -> None:
        """Store an object as another client or controller would have made it (a controller
        pod, an IngressClass, another run's namespace)."""
        group, _, version = str(obj["apiVersion"]).rpartition("/")
        meta = obj["metadata"]
        if plural == "namespaces":
            self.emulator.namespaces[meta["name"]] = copy.deepcopy(obj)
            return
        key = (kmock.resource(group, version, plural), meta.get("namespace"), meta["name"])
        self.emulator.objects[key] = copy.deepcopy(obj)

    def fail_next(self, pattern: str, status: int, message: str, times: int = 1) -> None:
        """Answer the next ``times`` writes matching ``"METHOD /path"`` with an error."""
        for _ in range(times):
            self.emulator.failures.append((re.compile(pattern), status, message))


@dataclass
class FakeIngress:
    """ingress-nginx as seen from outside: routes with the local model over API state.

    With ``node_port`` it is a node's kube-proxy instead: it serves the NodePort Service
    holding that nodePort, one random ready pod of its selector per connection.
    """

    server_api: ApiServer
    node_port: int | None = None
    lag: float = 0.0
    ingress_class: str = "nginx"  # the class this controller serves
    frozen: list[dict[str, Any]] | None = None
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    requests: int = 0
    _server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def freeze(self) -> None:
        """Stop following the API: keep serving the current configuration."""
        self.frozen = self.server_api.emulator.snapshot(0.0)

    def route(
        self, host: str | None, path: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        objects = (
            self.frozen if self.frozen is not None else self.server_api.emulator.snapshot(self.lag)
        )
        if self.node_port is not None:
            return self._node_port(objects)
        request = RoutedRequest.build(host, path, headers)
        for namespace in sorted({o["metadata"].get("namespace", "") for o in objects}):
            in_ns = [o for o in objects if o["metadata"].get("namespace") == namespace]
            if not any(o["kind"] == "Ingress" for o in in_ns):
                continue
            config = nginx_model.load(in_ns, namespace=namespace, ingress_class=self.ingress_class)
            outcome = config.route(request, self.rng)
            if not isinstance(outcome, Destination):
                continue
            services = {o["metadata"]["name"]: o for o in in_ns if o["kind"] == "Service"}
            selector = (services.get(outcome.service, {}).get("spec") or {}).get("selector") or {}
            pods = [
                o
                for o in in_ns
                if o["kind"] == "Pod"
                and all(o["metadata"]["labels"].get(k) == v for k, v in selector.items())
            ]
            if not pods:
                return 503, {}, b"no endpoints"
            return self._answer(self.rng.choice(pods))
        return 404, {}, b"default backend - 404"

    def _node_port(self, objects: list[dict[str, Any]]) -> tuple[int, dict[str, str], bytes]:
        for svc in objects:
            ports = (svc.get("spec") or {}).get("ports") or []
            if svc["kind"] != "Service" or not any(
                p.get("nodePort") == self.node_port for p in ports
            ):
                continue
            selector = svc["spec"].get("selector") or {}
            pods = [
                o
                for o in objects
                if o["kind"] == "Pod"
                and o["metadata"].get("namespace") == svc["metadata"].get("namespace")
                and all(o["metadata"]["labels"].get(k) == v for k, v in selector.items())
            ]
            if pods:
                return self._answer(self.rng.choice(pods))
        return 503, {}, b"connection refused (no endpoints)"

    @staticmethod
    def _answer(pod: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        version = pod["metadata"]["labels"].get("version", "")
        body = json.dumps({"version": version, "hostname": pod["metadata"]["name"]}).encode()
        return 200, {"X-App-Version": version, "Content-Type": "application/json"}, body

    def start(self) -> FakeIngress:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms stalls)

            def do_GET(self) -> None:  # http.server's naming
                fake.requests += 1
                headers = {k: v for k, v in self.headers.items()}
                status, extra, body = fake.route(self.headers.get("Host"), self.path, headers)
                self.send_response(status)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def api_server() -> Iterator[ApiServer]:
    """A Kubernetes API emulator on 127.0.0.1 (kmock), stopped after the test."""
    server = ApiServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_ingress(api_server: ApiServer) -> Iterator[FakeIngress]:
    """An ingress-nginx stand-in answering from the emulator's objects."""
    fake = FakeIngress(api_server).start()
    try:
        yield fake
    finally:
        fake.stop()


NODE_PORTS = (30100, 30101)


@pytest.fixture
def fake_node_ports(api_server: ApiServer) -> Iterator[dict[int, FakeIngress]]:
    """One kube-proxy stand-in per nodePort of the pool (kind maps each to a host port)."""
    fakes = {port: FakeIngress(api_server, node_port=port).start() for port in NODE_PORTS}
    try:
        yield fakes
    finally:
        for fake in fakes.values():
            fake.stop()


@pytest.fixture
def make_backend(
    api_server: ApiServer, fake_ingress: FakeIngress, fake_node_ports: dict[int, FakeIngress]
) -> Iterator[Callable[..., KubeBackend]]:
    """Build kube backends on the emulator (options as keyword arguments); all closed after."""
    made: list[KubeBackend] = []

    def make(**options: Any) -> KubeBackend:
        # A look at the data plane never runs past its deadline: room for a loaded machine.
        settings = {"wait_timeout": 5.0, "dataplane_timeout": 20.0} | options
        points = EntryPoints(
            urls={"*": fake_ingress.url},
            node_address="127.0.0.1",
            node_port_map={p: int(f.url.rsplit(":", 1)[1]) for p, f in fake_node_ports.items()},
            node_port_pool=NODE_PORTS,
        )
        backend = KubeBackend(api_server.api(), KubeOptions(**settings), points, run_id="run-1")
        made.append(backend)
        return backend

    try:
        yield make
    finally:
        for backend in made:
            backend.close()


@pytest.fixture
def kube_backend(make_backend: Callable[..., KubeBackend]) -> KubeBackend:
    """The kube backend on the emulator; traffic enters through :class:`FakeIngress`."""
    return make_backend()
