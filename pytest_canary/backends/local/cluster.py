"""The local backend's stand-in for a namespace: an object store, a Deployment controller
that runs real processes, Service endpoints, and the routers that read them.

Applying is synchronous and make-before-break, the order a careful operator (and our kube
backend) follows on a real cluster: workloads first (new pods ready before old ones go),
then Services and routing objects in one atomic switch, then deletions of what is no longer
wanted. The routers always read one immutable :class:`Snapshot`, swapped atomically.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import json
import math
import random
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pytest_canary.backends.base import Diagnostics, Entry, Environment
from pytest_canary.backends.local.router import (
    AccessRecord,
    ConnectionRouter,
    Endpoint,
    HttpRouter,
    LoopThread,
    RouterErrors,
)
from pytest_canary.backends.local.runtime import PodSpec, RunningPod, Runtime, wait_healthy
from pytest_canary.dataplane import nginx as nginx_model
from pytest_canary.dataplane.request import Destination, Refusal, RoutedRequest
from pytest_canary.errors import BackendError
from pytest_canary.manifests import Manifest
from pytest_canary.spec import ReleaseSpec

WORKLOAD_KINDS = ("Deployment",)
# Deletion order: routing first, then Services, then workloads (break after make).
DELETE_ORDER = {"Deployment": 2, "Service": 1}
# Which data-plane model serves a strategy's entry.
ENTRY_MODEL = {"nginx": "nginx"}
CONNECTION_ENTRY = ("replicas", "bluegreen")

Key = tuple[str, str]


def key_of(obj: Mapping[str, Any]) -> Key:
    """(kind, name) of an object."""
    return str(obj["kind"]), str(obj["metadata"]["name"])


@dataclass(frozen=True)
class Snapshot:
    """Everything a router needs for one request, immutable once published."""

    namespace: str
    objects: tuple[Manifest, ...]
    pods: tuple[RunningPod, ...]

    @cached_property
    def _services(self) -> dict[str, Manifest]:
        return {o["metadata"]["name"]: o for o in self.objects if o["kind"] == "Service"}

    @cached_property
    def _nginx(self) -> nginx_model.NginxConfig:
        return nginx_model.load(self.objects, namespace=self.namespace)

    def route(self, kind: str, request: RoutedRequest, rng: random.Random) -> Destination | Refusal:
        """Decide where a request goes with the model ``kind``."""
        if kind == "nginx":
            return self._nginx.route(request, rng)
        raise BackendError(f"no local data-plane model named {kind!r}")

    def service_endpoints(self, service: str) -> list[Endpoint]:
        """Ready pods selected by a Service (Pods join as soon as labels match and Ready)."""
        svc = self._services.get(service)
        if svc is None:
            return []
        selector = (svc.get("spec") or {}).get("selector") or {}
        if not selector:
            return []  # a Service without selector has no automatic endpoints
        return [
            Endpoint(pod.name, pod.host, pod.port, tuple(sorted(pod.labels.items())))
            for pod in self.pods
            if pod.ready and all(pod.labels.get(k) == v for k, v in selector.items())
        ]

    def endpoints(self, destination: Destination) -> list[Endpoint]:
        """Endpoints of a destination, narrowed to its subset labels if any."""
        found = self.service_endpoints(destination.service)
        if destination.labels:
            wanted = destination.labels.items()
            found = [e for e in found if all(item in e.labels for item in wanted)]
        return found

    @property
    def nginx_log(self) -> list[str]:
        """What ingress-nginx would have logged while building this configuration."""
        return list(self._nginx.log)


@dataclass
class WorkloadState:
    """The pods a Deployment owns and the template each runs."""

    pods: list[RunningPod] = field(default_factory=list)
    template_of: dict[str, str] = field(default_factory=dict)


def _template_hash(template: Mapping[str, Any]) -> str:
    blob = json.dumps(template, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def _resolve(value: int | str, replicas: int, round_up: bool) -> int:
    """maxSurge / maxUnavailable: an absolute number or a percentage of replicas
    (surge rounds up, unavailable rounds down, as the Deployment controller does)."""
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * replicas / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value)


class LocalEnvironment(Environment):
    """One test's namespace on the local backend."""

    def __init__(
        self,
        namespace: str,
        runtime: Runtime,
        loop: LoopThread,
        rng: random.Random,
    ) -> None:
        self.namespace = namespace
        self._runtime = runtime
        self._loop = loop
        self._rng = rng
        self._store: dict[Key, Manifest] = {}
        self._workloads: dict[str, WorkloadState] = {}
        self._errors = RouterErrors()
        self.access_log: collections.deque[AccessRecord] = collections.deque(maxlen=200)
        self._http_routers: dict[str, HttpRouter] = {}
        self._connection_routers: dict[str, ConnectionRouter] = {}
        self._snapshot = Snapshot(namespace, (), ())
        self._closed = False
        self.events: list[str] = []

    # -- state ---------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        """The routing snapshot currently served."""
        return self._snapshot

    @property
    def pods(self) -> list[RunningPod]:
        """Every pod running now."""
        return [pod for state in self._workloads.values() for pod in state.pods]

    def objects(self) -> list[Manifest]:
        """The applied objects, oldest first."""
        return list(self._store.values())

    def _publish(self) -> None:
        self._snapshot = Snapshot(self.namespace, tuple(self._store.values()), tuple(self.pods))

    # -- apply ---------------------------------------------------------------------------

    def apply(self, objects: Sequence[Manifest]) -> None:
        if self._closed:
            raise BackendError(f"environment {self.namespace} is closed")
        wanted = {key_of(o): copy.deepcopy(dict(o)) for o in objects}
        # 1. workloads: create/update and wait for their pods (make before break).
        for key, obj in wanted.items():
            if key[0] in WORKLOAD_KINDS:
                self._store[key] = obj
                self._reconcile_deployment(obj)
        # 2. Services and routing objects switch together; obsolete routing objects go.
        for key, obj in wanted.items():
            if key[0] not in WORKLOAD_KINDS:
                self._store[key] = obj
        stale = [k for k in self._store if k not in wanted]
        for key in sorted(stale, key=lambda k: DELETE_ORDER.get(k[0], 0)):
            if key[0] not in DELETE_ORDER:
                del self._store[key]
                self.events.append(f"deleted {key[0]}/{key[1]}")
        self._publish()
        # 3. then Services, then workloads that are no longer wanted.
        for key in sorted(stale, key=lambda k: DELETE_ORDER.get(k[0], 0)):
            if key[0] in DELETE_ORDER:
                del self._store[key]
                self.events.append(f"deleted {key[0]}/{key[1]}")
                self._publish()
                if key[0] == "Deployment":
                    self._delete_workload(key[1])

    def _pod_spec(self, deployment: Manifest, template_hash: str) -> PodSpec:
        template = deployment["spec"]["template"]
        container = template["spec"]["containers"][0]
        env: dict[str, str] = {}
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = str(item["value"])
        ports = container.get("ports") or [{"containerPort": 8080}]
        probe = (container.get("readinessProbe") or {}).get("httpGet") or {}
        suffix = secrets.token_hex(3)[:5]
        return PodSpec(
            name=f"{deployment['metadata']['name']}-{template_hash[:6]}-{suffix}",
            labels=dict(template["metadata"].get("labels") or {}),
            image=str(container.get("image", "")),
            env=env,
            port=int(ports[0]["containerPort"]),
            health=str(probe.get("path", "/health")),
        )

    def _start_pods(self, deployment: Manifest, template_hash: str, count: int) -> list[RunningPod]:
        if count <= 0:
            return []
        specs = [self._pod_spec(deployment, template_hash) for _ in range(count)]
        pods = self._runtime.start_many(specs)
        try:
            for pod in pods:
                wait_healthy(pod)
        except BaseException:
            for pod in pods:
                pod.stop(grace=1.0)
            raise
        for pod in pods:
            self.events.append(f"pod {pod.name} ready on {pod.host}:{pod.port}")
        return pods

    def _stop_pods(self, state: WorkloadState, pods: list[RunningPod]) -> None:
        for pod in pods:
            pod.ready = False  # leaves the endpoints first...
            state.pods.remove(pod)
            state.template_of.pop(pod.name, None)
        self._publish()
        for pod in pods:  # ...then drains and stops (SIGTERM, grace period)
            pod.stopper.terminate()
        for pod in pods:
            pod.stop()
            self.events.append(f"pod {pod.name} stopped")

    def _reconcile_deployment(self, deployment: Manifest) -> None:
        """A model of the Deployment controller's rolling update (maxSurge, maxUnavailable)."""
        name = deployment["metadata"]["name"]
        spec = deployment["spec"]
        replicas = int(spec.get("replicas", 1))
        template_hash = _template_hash(spec["template"])
        rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        surge = _resolve(rolling.get("maxSurge", "25%"), replicas, round_up=True)
        unavailable = _resolve(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
        if surge == 0 and unavailable == 0:
            surge = 1  # the API server rejects 0/0; never reached with our renderers
        state = self._workloads.setdefault(name, WorkloadState())

        def split() -> tuple[list[RunningPod], list[RunningPod]]:
            new = [p for p in state.pods if state.template_of.get(p.name) == template_hash]
            old = [p for p in state.pods if state.template_of.get(p.name) != template_hash]
            return new, old

        for _ in range(4 * (replicas + len(state.pods)) + 4):  # bounded: each step progresses
            new, old = split()
            if not old and len(new) == replicas:
                return
            if not old and len(new) > replicas:
                # Scale down: the newest pods go first.
                surplus = sorted(new, key=lambda p: p.started_at)[replicas:]
                self._stop_pods(state, surplus)
                continue
            # Surge: start new pods while the total stays within replicas + maxSurge.
            room = replicas + surge - len(state.pods)
            to_start = min(replicas - len(new), room)
            if to_start > 0:
                started = self._start_pods(deployment, template_hash, to_start)
                for pod in started:
                    state.pods.append(pod)
                    state.template_of[pod.name] = template_hash
                self._publish()
                continue
            # Remove old pods while ready pods stay >= replicas - maxUnavailable.
            ready = sum(1 for p in state.pods if p.ready)
            removable = min(len(old), ready - (replicas - unavailable))
            if removable > 0:
                self._stop_pods(state, sorted(old, key=lambda p: p.started_at)[:removable])
                continue
            raise BackendError(
                f"Deployment {name}: rolling update cannot progress with maxSurge={surge}, "
                f"maxUnavailable={unavailable}, replicas={replicas}"
            )
        raise BackendError(f"Deployment {name}: rolling update did not converge")

    def _delete_workload(self, name: str) -> None:
        state = self._workloads.pop(name, None)
        if state is not None:
            self._workloads[name] = state
            self._stop_pods(state, list(state.pods))
            del self._workloads[name]

    # -- entry ---------------------------------------------------------------------------

    def entry(self, spec: ReleaseSpec) -> Entry:
        if spec.strategy in CONNECTION_ENTRY:
            port = self._connection_router(spec.name).port
            return Entry(
                url=f"http://127.0.0.1:{port}",
                per_connection=True,
                description=f"Service {spec.name} (kube-proxy model) on 127.0.0.1:{port}",
            )
        kind = ENTRY_MODEL.get(spec.strategy)
        if kind is None:
            raise BackendError(f"the local backend has no entry for strategy {spec.strategy!r}")
        port = self._http_router(kind).port
        return Entry(
            url=f"http://127.0.0.1:{port}",
            host=spec.host,
            description=f"{kind} model on 127.0.0.1:{port}",
        )

    def _http_router(self, kind: str) -> HttpRouter:
        if kind not in self._http_routers:
            router = HttpRouter(
                kind, lambda: self._snapshot, self._rng, self._errors, self.access_log
            )
            self._loop.run(router.start())
            self._http_routers[kind] = router
        return self._http_routers[kind]

    def _connection_router(self, service: str) -> ConnectionRouter:
        if service not in self._connection_routers:
            router = ConnectionRouter(
                service,
                lambda: self._snapshot.service_endpoints(service),
                self._rng,
                self._errors,
                self.access_log,
            )
            self._loop.run(router.start())
            self._connection_routers[service] = router
        return self._connection_routers[service]

    # -- health, diagnostics, cleanup ----------------------------------------------------

    def check_health(self) -> None:
        self._errors.raise_first()

    def diagnostics(self) -> Diagnostics:
        diag = Diagnostics()
        diag.add(
            "pods",
            "\n".join(
                f"{p.name} {dict(p.labels)} {p.host}:{p.port} "
                f"{'Ready' if p.ready else 'NotReady'} {'Running' if p.alive() else 'Exited'}"
                for p in self.pods
            ),
        )
        diag.add("events", "\n".join(self.events[-40:]))
        diag.add("data-plane log", "\n".join(self._snapshot.nginx_log))
        diag.add(
            "router access log (last 25)", "\n".join(str(r) for r in list(self.access_log)[-25:])
        )
        for pod in self.pods:
            diag.add(f"log of pod {pod.name}", pod.log_tail(10))
        return diag

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        for http_router in self._http_routers.values():
            try:
                self._loop.run(http_router.stop(), timeout=10)
            except BaseException as exc:
                errors.append(exc)
        for conn_router in self._connection_routers.values():
            try:
                self._loop.run(conn_router.stop(), timeout=10)
            except BaseException as exc:
                errors.append(exc)
        for pod in self.pods:
            pod.stopper.terminate()
        for pod in self.pods:
            pod.stop(grace=2.0)
        self._workloads.clear()
        self._store.clear()
        if errors:
            raise BackendError(f"cleanup of {self.namespace} failed: {errors[0]!r}") from errors[0]
