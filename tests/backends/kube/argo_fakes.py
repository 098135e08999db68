"""The API emulator of ``tests/backends/conftest.py`` plus what a cluster with Argo Rollouts
does that the kube backend relies on, each written down here:

- the ``rollouts.argoproj.io`` resource (only when :attr:`ArgoEmulator.crd` is set: without
  it a list answers 404, as for an absent CRD);
- patches that are not applies, as the API server takes them: a JSON merge patch (RFC 7386)
  of the ``status`` subresource changes the status only; of the Rollout itself, everything
  but the status (``metadata.generation`` grows when the spec changes); a JSON patch
  (``replace`` operations) of the Rollout; each one a new ``resourceVersion``;
- a controller stand-in: the controller model of :mod:`pytest_canary.dataplane.argo_rollouts`
  synced to a fixpoint after every write and on every read (its clock: timed pauses end),
  with pods ready at once. It writes what the real one writes: the Rollout's status (Argo's
  JSON, ``observedGeneration`` a string), one ReplicaSet per template (owned by the Rollout,
  ``rollouts-pod-template-hash``, ``rollout.argoproj.io/revision``) and its pods, the objects
  the model writes (Services, canary Ingress, VirtualService, DestinationRule) and an Event
  per model event. :attr:`ArgoEmulator.lag` makes it answer only that long after the last
  write of a client; :attr:`ArgoEmulator.stopped` stops it (a cluster without a running
  controller).

The stand-in is the model itself, so a test through it proves the kube backend's plumbing
(which requests, which waits, which objects the data plane is planned from), never the
model's rules -- those are tested against upstream in ``tests/dataplane``.
"""

from __future__ import annotations

import copy
import dataclasses
import gzip
import importlib.resources
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import aiohttp.web
import attrs
import kmock

from conftest import APPLY, ApiServer, Call, ClusterEmulator, _status
from pytest_canary.dataplane import argo_rollouts as model

ROLLOUT = re.compile(
    r"^/apis/argoproj\.io/v1alpha1/namespaces/(?P<ns>[^/]+)/rollouts/(?P<name>[^/]+)"
    r"(?P<status>/status)?$"
)
ROUTING = {
    "Service": ("", "v1", "services"),
    "Ingress": ("networking.k8s.io", "v1", "ingresses"),
    "VirtualService": ("networking.istio.io", "v1", "virtualservices"),
    "DestinationRule": ("networking.istio.io", "v1", "destinationrules"),
}
ARGO_OWNED = "argo-fake/owned"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_json(status: model.RolloutStatus) -> dict[str, Any]:
    """A model status as Argo writes it (``observedGeneration`` a string)."""
    out: dict[str, Any] = {
        "observedGeneration": str(status.observed_generation),
        "phase": status.phase,
        "message": status.message,
        "currentPodHash": status.current_pod_hash,
        "stableRS": status.stable_rs,
        "currentStepHash": status.current_step_hash,
        "replicas": status.replicas,
        "updatedReplicas": status.updated_replicas,
        "readyReplicas": status.ready_replicas,
        "availableReplicas": status.available_replicas,
        "conditions": [
            {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
            for c in status.conditions
        ],
    }
    if status.current_step_index is not None:
        out["currentStepIndex"] = status.current_step_index
    if status.pause_conditions:
        out["pauseConditions"] = [
            {"reason": p.reason, "startTime": rfc3339(p.start_time)}
            for p in status.pause_conditions
        ]
    if status.controller_pause:
        out["controllerPause"] = True
    if status.abort:
        out["abort"] = True
        if status.aborted_at is not None:
            out["abortedAt"] = rfc3339(status.aborted_at)
    if status.promote_full:
        out["promoteFull"] = True
    if status.weights is not None:
        w = status.weights
        out["canary"] = {
            "weights": {
                "canary": {"weight": w.canary_weight, "podTemplateHash": w.canary_hash},
                "stable": {"weight": w.stable_weight, "podTemplateHash": w.stable_hash},
            }
        }
    return out


@dataclass
class FakeRollout:
    """What the controller stand-in keeps about one Rollout."""

    status: model.RolloutStatus = field(default_factory=model.RolloutStatus)
    replica_sets: dict[str, model.ReplicaSetState] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: int = 0


@attrs.define(kw_only=True)
class ArgoEmulator(ClusterEmulator):
    """The cluster emulator with Argo Rollouts (see the module docstring)."""

    crd: bool = True
    lag: float = 0.0
    stopped: bool = False
    argo: dict[tuple[str, str], FakeRollout] = attrs.field(factory=dict)
    last_write: float = 0.0
    _ips: int = 0

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        match = ROLLOUT.match(raw_request.path)
        content_type = raw_request.headers.get("Content-Type", "")
        if (
            self.crd
            and match
            and raw_request.method == "PATCH"
            and not content_type.startswith(APPLY)
        ):
            body = json.loads(await raw_request.read())
            self.calls.append(
                Call("PATCH", raw_request.path, dict(raw_request.query), content_type, body)
            )
            response = self._patch(match, content_type, body)
            self._reconcile()
            return response
        if raw_request.method in ("PATCH", "POST", "PUT", "DELETE"):
            self.last_write = time.monotonic()
        elif self._sync_argo():
            self._publish()
        return await super().__call__(raw_request)

    # -- patches that are not applies --------------------------------------------------------

    def _patch(self, match: re.Match[str], content_type: str, body: Any) -> aiohttp.web.Response:
        self.last_write = time.monotonic()
        key = (kmock.resource("argoproj.io", "v1alpha1", "rollouts"), match["ns"], match["name"])
        try:
            existing = self.objects[key]
        except KeyError:
            existing = None
        if existing is None or existing.deleted:
            return _status(404, f'rollouts.argoproj.io "{match["name"]}" not found')
        current = copy.deepcopy(existing.raw)
        if match["status"]:
            if content_type != "application/merge-patch+json":
                return _status(415, f"the emulator takes status merge patches, not {content_type}")
            current["status"] = merge_patch(current.get("status") or {}, body.get("status") or {})
            state = self.argo.get((match["ns"], match["name"]))
            if state is not None:
                state.status = model.apply_status_patch(state.status, body.get("status") or {})
        else:
            before = copy.deepcopy(current.get("spec"))
            if content_type == "application/merge-patch+json":
                current = merge_patch(current, {k: v for k, v in body.items() if k != "status"})
            elif content_type == "application/json-patch+json":
                for op in body:
                    assert op["op"] == "replace", op
                    *parents, leaf = op["path"].strip("/").split("/")
                    node = current
                    for part in parents:
                        node = node[part]
                    node[leaf] = copy.deepcopy(op["value"])
            else:
                return _status(415, f"unexpected patch type {content_type}")
            if current.get("spec") != before:
                meta = current["metadata"]
                meta["generation"] = int(meta.get("generation", 1)) + 1
        self._serial += 1
        current["metadata"]["resourceVersion"] = str(self._serial)
        self.objects[key] = current
        return aiohttp.web.json_response(current)

    # -- the controller stand-in -------------------------------------------------------------

    def _reconcile(self) -> None:
        super()._reconcile()
        self._sync_argo()
        self._publish()

    def _sync_argo(self) -> bool:
        if self.stopped or time.monotonic() - self.last_write < self.lag:
            return False
        changed = False
        for (res, ns, name), obj in list(self.objects.items()):
            if res.plural == "rollouts" and not obj.deleted:
                changed |= self._sync_rollout(ns, name, obj.raw)
        return changed

    def _in(self, namespace: str, kinds: Any) -> dict[tuple[str, str], dict[str, Any]]:
        return {
            (o.raw["kind"], name): o.raw
            for (_, ns, name), o in self.objects.items()
            if ns == namespace and not o.deleted and o.raw.get("kind") in kinds
        }

    def _store(self, namespace: str, obj: dict[str, Any], plural_of: Any) -> None:
        group, version, plural = plural_of
        stored = copy.deepcopy(obj)
        stored.setdefault("metadata", {})["namespace"] = namespace
        key = (kmock.resource(group, version, plural), namespace, stored["metadata"]["name"])
        try:
            previous = self.objects[key]
        except KeyError:
            previous = None
        if previous is not None and not previous.deleted and previous.raw == stored:
            return
        self._serial += 1
        stored["metadata"]["resourceVersion"] = str(self._serial)
        stored["metadata"].setdefault("uid", f"uid-{self._serial}")
        self.objects[key] = stored

    def _sync_rollout(self, namespace: str, name: str, raw: dict[str, Any]) -> bool:
        state = self.argo.setdefault((namespace, name), FakeRollout())
        config = model.read_rollout(raw)
        routing = self._in(namespace, ROUTING)
        status = state.status
        before = (status, dict(state.replica_sets))
        for _ in range(100):
            observed = tuple(
                dataclasses.replace(rs, pods=rs.replicas, available=rs.replicas)
                for rs in state.replica_sets.values()
            )
            result = model.reconcile(config, status, observed, routing, time.time())
            done = model.settled(result, status, observed)
            for rs in result.replica_sets:
                if rs.hash not in state.templates:
                    template = copy.deepcopy(dict(config.template))
                    labels = template.setdefault("metadata", {}).setdefault("labels", {})
                    labels[model.POD_TEMPLATE_HASH] = rs.hash
                    state.templates[rs.hash] = template
                state.replica_sets[rs.hash] = rs
            for obj in result.objects:
                self._store(namespace, obj, ROUTING[obj["kind"]])
                routing[(obj["kind"], obj["metadata"]["name"])] = obj
            for line in result.events:
                self._event(namespace, name, line, state)
            status = result.status
            if done:
                break
        state.status = status
        self._write_replica_sets(namespace, raw, state)
        wanted = status_json(status)
        if raw.get("status") != wanted:
            updated = copy.deepcopy(raw)
            updated["status"] = wanted
            self._serial += 1
            updated["metadata"]["resourceVersion"] = str(self._serial)
            key = (kmock.resource("argoproj.io", "v1alpha1", "rollouts"), namespace, name)
            self.objects[key] = updated
        return before != (status, dict(state.replica_sets))

    def _event(self, namespace: str, rollout: str, line: str, state: FakeRollout) -> None:
        reason, _, message = line.partition(": ")
        state.events += 1
        self._store(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{rollout}.{state.events:04d}"},
                "involvedObject": {"kind": "Rollout", "name": rollout},
                "type": "Warning" if "Abort" in reason or "Error" in reason else "Normal",
                "reason": reason,
                "message": message,
                "lastTimestamp": f"2026-01-01T00:00:00Z-{state.events:04d}",
            },
            ("", "v1", "events"),
        )

    def _write_replica_sets(
        self, namespace: str, rollout: dict[str, Any], state: FakeRollout
    ) -> None:
        rollout_meta = rollout["metadata"]
        for rs_hash, rs in state.replica_sets.items():
            template = state.templates[rs_hash]
            labels = dict(template["metadata"]["labels"])
            rs_name = f"{rollout_meta['name']}-{rs_hash}"
            self._store(
                namespace,
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": rs_name,
                        "labels": labels,
                        "annotations": {model.REVISION: str(rs.revision)},
                        "ownerReferences": [
                            {
                                "apiVersion": model.API_VERSION,
                                "kind": "Rollout",
                                "name": rollout_meta["name"],
                                "uid": rollout_meta.get("uid", ""),
                                "controller": True,
                            }
                        ],
                        "creationTimestamp": rfc3339(rs.created or time.time()),
                    },
                    "spec": {
                        "replicas": rs.replicas,
                        "selector": {"matchLabels": labels},
                        "template": template,
                    },
                    "status": {
                        "replicas": rs.replicas,
                        "readyReplicas": rs.replicas,
                        "availableReplicas": rs.replicas,
                    },
                },
                ("apps", "v1", "replicasets"),
            )
            pods = kmock.resource("", "v1", "pods")
            for index in range(max(rs.replicas, 0)):
                key = (pods, namespace, f"{rs_name}-{index}")
                try:
                    exists = not self.objects[key].deleted
                except KeyError:
                    exists = False
                if exists:
                    continue
                self._ips += 1
                self.objects[key] = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": f"{rs_name}-{index}",
                        "namespace": namespace,
                        "labels": labels,
                        "annotations": {ARGO_OWNED: rs_name},
                    },
                    "spec": {"containers": [{"name": "app"}], "nodeName": "emulated"},
                    "status": {
                        "phase": "Running",
                        "podIP": f"10.1.{self._ips // 250}.{self._ips % 250 + 1}",
                        "conditions": [{"type": "Ready", "status": "True"}],
                    },
                }
            for (res, ns, pod_name), obj in list(self.objects.items()):
                if res.plural != "pods" or ns != namespace or obj.deleted:
                    continue
                owner = (obj.raw["metadata"].get("annotations") or {}).get(ARGO_OWNED)
                if owner == rs_name and int(pod_name.rsplit("-", 1)[1]) >= rs.replicas:
                    obj.delete()

    def _publish(self) -> None:
        """EndpointSlices of every Service from every ready pod (the Rollouts' too), and a
        snapshot for the data-plane stand-ins."""
        slices = kmock.resource("discovery.k8s.io", "v1", "endpointslices")
        pods = [
            o.raw
            for (res, _, _), o in self.objects.items()
            if res.plural == "pods" and not o.deleted
        ]
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
                for pod in sorted(pods, key=lambda p: p["metadata"]["name"])
                if pod["metadata"].get("namespace") == namespace
                and all(pod["metadata"]["labels"].get(k) == v for k, v in selector.items())
            ]
            self.objects[(slices, namespace, f"{name}-slice")] = {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-slice",
                    "namespace": namespace,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "endpoints": endpoints,
            }
        snapshot = copy.deepcopy([o.raw for o in self.objects.values() if not o.deleted])
        with self.snapshot_lock:
            self.snapshots.append((time.monotonic(), snapshot))
            del self.snapshots[:-50]


def argo_api_server(*, crd: bool = True) -> ApiServer:
    """An :class:`ApiServer` whose emulator is an :class:`ArgoEmulator` (not started)."""
    server = ApiServer()
    emulator = ArgoEmulator(crd=crd)
    bundled = importlib.resources.files("kmock._internal").joinpath("resources.json.gz")
    emulator.resources.load_data(gzip.decompress(bundled.read_bytes()))
    for plural in ("virtualservices", "destinationrules", "gateways"):
        emulator.resources[f"networking.istio.io/v1/{plural}"]
    for plural in ("httproutes", "gateways"):
        emulator.resources[f"gateway.networking.k8s.io/v1/{plural}"]
    if crd:
        emulator.resources["argoproj.io/v1alpha1/rollouts"]
    server.emulator = emulator
    return server
