"""Argo Rollouts on a cluster: the real controller's status read, the kubectl plugin's
commands sent through the API as the plugin sends them, and waits that ask the controller
model (:mod:`pytest_canary.dataplane.argo_rollouts`) what the controller must have written.

**Commands** (argoproj/argo-rollouts v1.9.1 ``pkg/kubectl-argo-rollouts/cmd``), no plugin
binary needed -- :func:`plugin_patches` builds exactly what the plugin sends:

- ``promote`` (``promote/promote.go`` ``PromoteRollout`` / ``getPatches``): a JSON merge
  patch of the ``status`` subresource, ``{"status": {"pauseConditions": null}}`` -- without
  pause conditions ``{"status": {"pauseConditions": null, "currentStepIndex": i + 1}}`` (the
  model's :func:`~pytest_canary.dataplane.argo_rollouts.promote_patch`) -- then, if
  ``spec.paused``, a merge patch of the Rollout itself, ``{"spec": {"paused": false}}``;
- ``promote --full``: ``{"status": {"promoteFull": true}}`` unless already fully promoted
  (``currentPodHash == stableRS``), and the same ``spec.paused`` patch;
- ``abort`` (``abort/abort.go``): status merge patch ``{"status": {"abort": true}}``;
- ``retry rollout`` (``retry/retry.go``): status merge patch ``{"status": {"abort": false}}``;
- ``undo`` (``undo/undo.go`` ``RunUndoRollout``): the ReplicaSets the Rollout controls
  (its selector, then the controller owner reference), the one of the second-highest
  ``rollout.argoproj.io/revision`` (model :func:`~pytest_canary.dataplane.argo_rollouts.
  undo_target`), its template without ``rollouts-pod-template-hash`` as a JSON patch
  ``[{"op": "replace", "path": "/spec/template", "value": ...}]`` of the Rollout; skipped
  when the template already matches (``equalIgnoreHash``).

The v0.9 fallback of the plugin (the whole object patched when the status subresource
returns NotFound) is not sent: v1.9.1's CRD has the subresource.

**Status as a client sees it** (:func:`client_status`): the controller's ``status.phase``
unless it has not seen the latest change yet -- ``utils/rollout/rolloututil.go``
``GetRolloutPhase`` (model :func:`~pytest_canary.dataplane.argo_rollouts.client_phase`):
``observedGeneration`` (a string) behind ``metadata.generation``, or an unpause not yet
observed (``controllerPause`` without pause conditions); and, for ``retry``, a
``Progressing`` condition still ``RolloutAborted`` while ``status.abort`` is false
(``rollout/sync.go`` ``calculateRolloutConditions`` replaces it with ``RolloutRetry``). A
status the plugin's own patch wrote is not the controller's answer either: a wait reads on
only once the Rollout's ``resourceVersion`` moved past that patch.

**What the controller must have written** (:func:`written_check`), once a wait's condition
holds, in the states where the model says what to expect -- at a pause step, fully promoted,
aborted: ``status.canary.weights`` (``model.expected_weight``), the available pods of the
canary and stable ReplicaSets (``model.expected_canary_replicas`` and the basic canary's
``approximate_weighted_counts``), the stable and canary Services' selectors
(``rollouts-pod-template-hash``, ``rollout/service.go``), the canary Ingress
``model.canary_ingress_name`` carrying every annotation the controller owns
(``model.desired_annotations``: ``canary: "true"``, the status's weight, the additional and
canary annotations; the others it keeps as they are, and a routing one the Rollout no longer
sets is a note of the failure report and of :class:`~pytest_canary.byo.RetainedRoutingWarning`,
not a disagreement), the VirtualService routes as ``model.virtual_service_with_weight``
writes them and the DestinationRule subsets as ``model.destination_rule_with_hashes`` labels
them. Only then is
the data plane's convergence checked (:mod:`~.environment`), on the objects as the controller
wrote them.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pytest_canary.backends import waits
from pytest_canary.backends.kube.api import KubeApi, api_error_message, status_of
from pytest_canary.backends.waits import Check
from pytest_canary.dataplane import argo_rollouts as model
from pytest_canary.errors import BackendError, CanaryConfigError, ConvergenceTimeout

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
ACTIONS = ("promote", "promote-full", "abort", "retry", "undo")
"""``kubectl argo rollouts`` commands a handle sends."""

PINNED = "v1.9.1"
INSTALL_URL = f"https://github.com/argoproj/argo-rollouts/releases/download/{PINNED}/install.yaml"
INSTALL_HINT = (
    f"install the Argo Rollouts controller ({PINNED}, the version the model follows): "
    f"kubectl create namespace argo-rollouts && kubectl apply --server-side -n argo-rollouts "
    f"-f {INSTALL_URL} -- or run on kind (--canary-backend=kind), which installs it when a "
    "test needs it"
)
"""How to get the controller, for the errors and skips that need it."""

PROGRESSING_CONDITION = "Progressing"
MAX_EVENTS = 200
"""Events of a Rollout kept for reports (the newest)."""
MAX_COMMANDS = 50
"""Commands sent per Rollout kept for reports."""
WAIT_INTERVAL = 1.0
"""Longest pause between two looks at a Rollout (the first looks come faster)."""

Key = tuple[str, str]  # (kind, name), as the model keys the namespace's objects
INGRESS = ("networking.k8s.io/v1", "Ingress")
SERVICE = ("v1", "Service")
VIRTUAL_SERVICE = ("networking.istio.io/v1", "VirtualService")
DESTINATION_RULE = ("networking.istio.io/v1", "DestinationRule")


# -- what the plugin sends ------------------------------------------------------------------


@dataclass(frozen=True)
class PluginPatch:
    """One request ``kubectl argo rollouts`` sends for a command.

    Attributes:
        subresource: ``status`` or None (the Rollout itself).
        content_type: the patch type (JSON merge patch or JSON patch).
        body: the patch.
    """

    subresource: str | None
    content_type: str
    body: Any

    def describe(self) -> str:
        """``PATCH status merge {...}``."""
        where = self.subresource or "rollout"
        kind = "merge" if self.content_type == MERGE_PATCH else "json"
        return f"PATCH {where} ({kind}) {_compact(self.body)}"


def _compact(body: Any, limit: int = 300) -> str:
    import json

    text = json.dumps(body, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return _meta(obj).get("labels") or {}


def _template(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return (obj.get("spec") or {}).get("template") or {}


def rs_hash(replica_set: Mapping[str, Any]) -> str:
    """A ReplicaSet's ``rollouts-pod-template-hash`` label."""
    return str(_labels(replica_set).get(model.POD_TEMPLATE_HASH, ""))


def _seconds(stamp: object) -> float:
    if not isinstance(stamp, str):
        return 0.0
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def replica_set_state(replica_set: Mapping[str, Any]) -> model.ReplicaSetState:
    """A live ReplicaSet as the model reads one: hash, revision, sizes."""
    meta = _meta(replica_set)
    status = replica_set.get("status") or {}
    annotations = meta.get("annotations") or {}
    try:
        revision = int(annotations.get(model.REVISION, 0) or 0)
    except ValueError:
        revision = 0
    return model.ReplicaSetState(
        hash=rs_hash(replica_set),
        revision=revision,
        replicas=int((replica_set.get("spec") or {}).get("replicas") or 0),
        pods=int(status.get("replicas") or 0),
        available=int(status.get("availableReplicas") or 0),
        created=_seconds(meta.get("creationTimestamp")),
    )


def controlled_by(replica_set: Mapping[str, Any], rollout: Mapping[str, Any]) -> bool:
    """Whether the Rollout is the ReplicaSet's controller (``metav1.IsControlledBy``: the
    controller owner reference's uid; by kind and name where the API gave no uid)."""
    uid = _meta(rollout).get("uid")
    for ref in _meta(replica_set).get("ownerReferences") or []:
        if not ref.get("controller"):
            continue
        if uid and ref.get("uid"):
            return bool(ref.get("uid") == uid)
        return bool(ref.get("kind") == model.KIND and ref.get("name") == _meta(rollout).get("name"))
    return False


def _without_hash(template: Mapping[str, Any]) -> dict[str, Any]:
    copied = copy.deepcopy(dict(template))
    labels = (copied.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(model.POD_TEMPLATE_HASH, None)
    return copied


def plugin_patches(
    rollout: Mapping[str, Any], action: str, replica_sets: Sequence[Mapping[str, Any]] = ()
) -> list[PluginPatch]:
    """The requests ``kubectl argo rollouts <action>`` sends for this Rollout, in order
    (empty when it sends none), per ``pkg/kubectl-argo-rollouts/cmd`` of v1.9.1.

    Args:
        rollout: the Rollout as the API returns it.
        action: ``promote``, ``promote-full``, ``abort``, ``retry`` or ``undo``.
        replica_sets: the ReplicaSets the Rollout controls (``undo`` only).

    Raises:
        CanaryConfigError: an unknown action.
        BackendError: ``undo`` without a previous revision (the plugin's error).
    """
    if action not in ACTIONS:
        raise CanaryConfigError(f"action={action!r}: must be one of {', '.join(ACTIONS)}")
    spec = rollout.get("spec") or {}
    if action in ("promote", "promote-full"):
        config = model.read_rollout(rollout)
        status = model.read_status(rollout)
        patches: list[PluginPatch] = []
        # promote.go PromoteRollout: the status patch first, then the spec patch.
        body = model.promote_patch(config, status, full=action == "promote-full")
        if body:
            patches.append(PluginPatch("status", MERGE_PATCH, {"status": body}))
        if spec.get("paused"):
            patches.append(PluginPatch(None, MERGE_PATCH, {"spec": {"paused": False}}))
        return patches
    if action == "abort":
        return [PluginPatch("status", MERGE_PATCH, {"status": model.abort_patch()})]
    if action == "retry":
        return [PluginPatch("status", MERGE_PATCH, {"status": model.retry_patch()})]
    owned = [rs for rs in replica_sets if controlled_by(rs, rollout)]
    target = model.undo_target(replica_set_state(rs) for rs in owned)
    name = _meta(rollout).get("name")
    if target is None:
        raise BackendError(f'kubectl argo rollouts undo: no revision found for rollout "{name}"')
    chosen = next(rs for rs in owned if rs_hash(rs) == target.hash)
    template = _without_hash(_template(chosen))
    if model.equal_ignore_hash(_template(rollout), template):
        return []  # "skipped rollback (current template already matches revision N)"
    return [
        PluginPatch(
            None, JSON_PATCH, [{"op": "replace", "path": "/spec/template", "value": template}]
        )
    ]


# -- what a client sees ---------------------------------------------------------------------


def unobserved(rollout: Mapping[str, Any]) -> str:
    """Why the Rollout's status does not answer its latest change yet ("" when it does):
    ``GetRolloutPhase``'s two rules (``observedGeneration``, a string, behind
    ``metadata.generation``; ``controllerPause`` without pause conditions: an unpause not yet
    observed) and the retry rule of ``calculateRolloutConditions``."""
    status = model.read_status(rollout)
    generation = int(_meta(rollout).get("generation") or 0)
    phase, message = model.client_phase(generation, status)
    if phase != status.phase or message != status.message:
        return message
    progressing = status.condition(PROGRESSING_CONDITION)
    if not status.abort and progressing is not None and progressing.reason == model.ABORTED_REASON:
        # rollout/sync.go calculateRolloutConditions: "!c.rollout.Status.Abort &&
        # abortCondExists" becomes RolloutRetry -- until then the retry is not observed.
        return "waiting for the retry to be observed"
    return ""


def client_status(
    rollout: Mapping[str, Any], replica_sets: Sequence[Mapping[str, Any]] = ()
) -> model.RolloutStatus:
    """The Rollout's status with the phase ``kubectl argo rollouts get`` shows
    (``GetRolloutPhase``): Progressing while the controller has not observed the latest
    change (:func:`unobserved`); its weight as the plugin shows it, from ``replica_sets``
    (those it controls) for a basic canary."""
    status = model.read_status(rollout, [replica_set_state(rs) for rs in replica_sets])
    waiting = unobserved(rollout)
    if waiting:
        return dataclasses.replace(status, phase=model.PROGRESSING, message=waiting)
    return status


@dataclass(frozen=True)
class LiveRollout:
    """A Rollout as it is now on the cluster, with what the controller wrote for it.

    Attributes:
        obj: the Rollout object.
        config: the Rollout as the model reads it.
        status: its status as a client sees it (:func:`client_status`).
        replica_sets: the ReplicaSets it controls.
        objects: the Services, Ingresses (the canary one included), VirtualServices and
            DestinationRules its spec names, by (kind, name); absent ones are left out.
    """

    obj: Mapping[str, Any]
    config: model.RolloutConfig
    status: model.RolloutStatus
    replica_sets: tuple[Mapping[str, Any], ...] = ()
    objects: Mapping[Key, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The Rollout's name."""
        return str(_meta(self.obj).get("name", ""))

    @property
    def generation(self) -> int:
        """``metadata.generation``."""
        return int(_meta(self.obj).get("generation") or 0)

    def replica_set(self, pod_hash: str) -> Mapping[str, Any] | None:
        """The ReplicaSet of a pod template hash."""
        return next((rs for rs in self.replica_sets if rs_hash(rs) == pod_hash), None)

    def describe(self) -> str:
        """One line: phase, step, weight, hashes, generations, ReplicaSets."""
        raw = self.obj.get("status") or {}
        text = (
            f"{self.status.describe()}; observedGeneration {raw.get('observedGeneration')!r} "
            f"of generation {self.generation}"
        )
        wanted = self.config.steps_hash
        if self.status.current_step_hash and self.status.current_step_hash != wanted:
            text += f"; currentStepHash {self.status.current_step_hash} (the model: {wanted})"
        pods = []
        for rs in sorted(self.replica_sets, key=lambda r: -replica_set_state(r).revision):
            state = replica_set_state(rs)
            version = _labels(_template(rs)).get(waits.VERSION_LABEL, "?")
            pods.append(
                f"{state.hash} rev {state.revision} ({version}): {state.available}/"
                f"{state.replicas} available"
            )
        return text + ("; ReplicaSets " + ", ".join(pods) if pods else "; no ReplicaSet yet")


def settled(status: model.RolloutStatus) -> bool:
    """A state the controller stays in until someone acts or a timer runs out: paused,
    Healthy or Degraded."""
    return status.paused or status.phase in (model.HEALTHY, model.DEGRADED)


# -- what the controller must have written -----------------------------------------------------


def _paused_step(status: model.RolloutStatus) -> int | None:
    """The step index of a canary pause step the Rollout waits at (None otherwise)."""
    if status.abort or status.completed or status.current_step_index is None:
        return None
    if any(p.reason == model.PAUSE_STEP for p in status.pause_conditions):
        return status.current_step_index
    return None


def expected_weight(config: model.RolloutConfig, status: model.RolloutStatus) -> int | None:
    """The canary weight the controller must have written in this state (None: no
    expectation): 0 fully promoted or aborted (``reconcileTrafficRouting``), the
    setWeight in effect at a pause step (``model.expected_weight``)."""
    if status.completed or status.abort:
        return 0
    step = _paused_step(status)
    return None if step is None else model.expected_weight(config, step)


def expected_available(
    config: model.RolloutConfig, status: model.RolloutStatus
) -> tuple[int | None, int | None]:
    """(canary, stable) available pods the model expects in this state (None: no
    expectation). Fully promoted: the stable ReplicaSet has every replica. Aborted: the
    stable has every replica; a basic canary's canary ReplicaSet none (its weight is 0).
    At a pause step: the step's counts (traffic routing: ``expected_canary_replicas``,
    stable full; basic canary: ``approximate_weighted_counts`` of the setWeight)."""
    if status.completed:
        return None, config.replicas
    if status.abort:
        return (None if config.traffic_routing else 0), config.replicas
    step = _paused_step(status)
    if step is None:
        return None, None
    if config.traffic_routing:
        return model.expected_canary_replicas(config, step), config.replicas
    surge, _ = config.fenceposts()
    weight = model.expected_weight(config, step)
    return model.approximate_weighted_counts(config.replicas, weight, model.MAX_WEIGHT, surge)


def _selector_hash(service: Mapping[str, Any] | None) -> str | None:
    if service is None:
        return None
    return str(((service.get("spec") or {}).get("selector") or {}).get(model.POD_TEMPLATE_HASH))


def _route_weights(vs: Mapping[str, Any], names: Sequence[str]) -> list[Any]:
    routes = (vs.get("spec") or {}).get("http") or []
    chosen = [r for r in routes if not names or r.get("name") in names]
    return [
        (
            r.get("name"),
            [
                (
                    str((d.get("destination") or {}).get("host", "")),
                    str((d.get("destination") or {}).get("subset", "")),
                    int(d.get("weight") or 0),
                )
                for d in r.get("route") or []
            ],
        )
        for r in chosen
    ]


def _subset_hashes(dr: Mapping[str, Any]) -> dict[str, str | None]:
    return {
        str(s.get("name")): (s.get("labels") or {}).get(model.POD_TEMPLATE_HASH)
        for s in (dr.get("spec") or {}).get("subsets") or []
    }


def _written_objects(live: LiveRollout, weight: int) -> list[str]:
    """What differs between the routing objects and what the controller writes for the
    status's weights (empty: nothing)."""
    config, status, objects = live.config, live.status, live.objects
    weights = status.weights
    problems: list[str] = []
    if config.nginx is not None:
        for stable_name in config.nginx.stable_ingresses:
            name = model.canary_ingress_name(config.name, stable_name)
            canary = objects.get(("Ingress", name))
            stable = objects.get(("Ingress", stable_name))
            if canary is None or stable is None:
                missing = name if canary is None else stable_name
                problems.append(f"Ingress {missing} not found")
                continue
            try:
                wanted = model.canary_ingress(config, stable, weight, canary)
            except model.ReconcileError as exc:
                problems.append(f"Ingress {stable_name}: {exc}")
                continue
            # Every key the controller owns (buildCanaryIngress); the others it keeps as they
            # are (getDesiredAnnotations), so they say nothing about its progress.
            annotations = _meta(canary).get("annotations") or {}
            for key, want in model.desired_annotations(config, stable, weight).items():
                have = annotations.get(key)
                if have != want:
                    problems.append(f"Ingress {name}: {key} is {have!r}, wanted {want!r}")
            if (canary.get("spec") or {}).get("rules") != wanted["spec"]["rules"]:
                problems.append(
                    f"Ingress {name}: rules are not the stable Ingress's pointed at "
                    f"{config.canary_service}"
                )
    if config.istio is not None:
        for ref in config.istio.virtual_services:
            vs_name = ref.name.split(".", 1)[0]
            vs = objects.get(("VirtualService", vs_name))
            if vs is None:
                problems.append(f"VirtualService {vs_name} not found")
                continue
            try:
                wanted_vs = model.virtual_service_with_weight(config, vs, ref, weight)
            except model.ReconcileError as exc:
                problems.append(f"VirtualService {vs_name}: {exc}")
                continue
            names = list(ref.routes)
            if _route_weights(vs, names) != _route_weights(wanted_vs, names):
                problems.append(
                    f"VirtualService {vs_name}: routes {_route_weights(vs, names)}, wanted "
                    f"{_route_weights(wanted_vs, names)}"
                )
        dr_name = config.istio.destination_rule
        if dr_name and weights is not None:
            dr = objects.get(("DestinationRule", dr_name))
            if dr is None:
                problems.append(f"DestinationRule {dr_name} not found")
            else:
                wanted_dr = model.destination_rule_with_hashes(
                    config, dr, weights.canary_hash, weights.stable_hash
                )
                if _subset_hashes(dr) != _subset_hashes(wanted_dr):
                    problems.append(
                        f"DestinationRule {dr_name}: subset hashes {_subset_hashes(dr)}, "
                        f"wanted {_subset_hashes(wanted_dr)}"
                    )
    return problems


def written_check(live: LiveRollout) -> Check:
    """Whether what the controller wrote agrees with its status and with the model, in a
    state where the model says what to expect (see the module docstring)."""
    config, status = live.config, live.status
    problems: list[str] = []
    weight = expected_weight(config, status)
    if config.traffic_routing and weight is not None:
        have = status.weights.canary_weight if status.weights is not None else None
        if have is None and weight != 0:
            problems.append(f"no status.canary.weights yet (the model expects {weight})")
        elif have is not None and have != weight:
            problems.append(
                f"status.canary.weights.canary.weight {have}, the model expects {weight} "
                f"(step {status.current_step_index})"
            )
        elif have is not None:
            problems += _written_objects(live, have)
    canary_pods, stable_pods = expected_available(config, status)
    for role, pod_hash, wanted in (
        ("canary", status.current_pod_hash, canary_pods),
        ("stable", status.stable_rs, stable_pods),
    ):
        if wanted is None or not pod_hash:
            continue
        rs = live.replica_set(pod_hash)
        have_pods = replica_set_state(rs).available if rs is not None else 0
        if have_pods != wanted:
            problems.append(
                f"{role} ReplicaSet {pod_hash}: {have_pods} pods available, the model "
                f"expects {wanted}"
            )
    if (status.completed or status.abort) and not config.traffic_routing:
        # A basic canary's Service selects every pod: none of another ReplicaSet may serve.
        others = [
            rs
            for rs in live.replica_sets
            if rs_hash(rs) != status.stable_rs and replica_set_state(rs).available
        ]
        if others:
            problems.append(
                "pods of other ReplicaSets still available: "
                + ", ".join(f"{rs_hash(rs)} ({replica_set_state(rs).available})" for rs in others)
            )
    if weight is not None and status.stable_rs:
        # rollout/service.go reconcileStableAndCanaryService / ensureSVCTargets: the stable
        # Service on stableRS, the canary Service on the new ReplicaSet (the stable one once
        # fully promoted). Aborted, no expectation for the canary Service: with traffic
        # routing upstream switches it back and forth between syncs (#3078); a basic canary
        # leaves it on the new ReplicaSet.
        for service, target in (
            (config.stable_service, status.stable_rs),
            (config.canary_service, None if status.abort else status.current_pod_hash),
        ):
            if not service or target is None:
                continue
            found = live.objects.get(("Service", service))
            if found is None:
                problems.append(f"Service {service} not found")
                continue
            have_hash = _selector_hash(found)
            if have_hash != target:
                problems.append(
                    f"Service {service} selects {model.POD_TEMPLATE_HASH}={have_hash}, "
                    f"wanted {target}"
                )
    if problems:
        return Check(False, "the controller has not written it all yet: " + "; ".join(problems))
    return Check(True, "the controller's writes agree with the model")


# -- the controller of one namespace ----------------------------------------------------------


def _fetch(api: KubeApi, kind: tuple[str, str], name: str, namespace: str) -> Any:
    return api.get(kind[0], kind[1], name, namespace)


class ClusterRollouts:
    """The Rollouts of one test namespace, driven the way ``kubectl argo rollouts`` does.

    Args:
        api: the cluster.
        namespace: the test namespace.
        wait_timeout: seconds the controller gets to act (``--canary-wait-timeout``), named
            by timeout messages.
    """

    def __init__(self, api: KubeApi, namespace: str, *, wait_timeout: float) -> None:
        self.api = api
        self.namespace = namespace
        self.wait_timeout = wait_timeout
        self._lock = threading.Lock()
        # Per Rollout: the resourceVersion our last status patch left; the controller has
        # not answered it while the Rollout still has it.
        self._unanswered: dict[str, str] = {}
        self.commands: dict[str, list[str]] = {}

    # -- reading ----------------------------------------------------------------------------

    def get(self, name: str) -> dict[str, Any]:
        """The Rollout object.

        Raises:
            BackendError: it does not exist.
        """
        obj = self.api.get(model.API_VERSION, model.KIND, name, self.namespace)
        if obj is None:
            raise BackendError(f"no Rollout {name!r} in namespace {self.namespace}")
        return obj

    def replica_sets(self, rollout: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The ReplicaSets the Rollout controls (its selector, then the owner reference,
        as ``undo.go`` ``listReplicaSets``)."""
        match = ((rollout.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(match.items())) or None
        found = self.api.list(
            "apps/v1", "ReplicaSet", namespace=self.namespace, label_selector=selector
        )
        return [rs for rs in found if controlled_by(rs, rollout)]

    def _routing_objects(self, config: model.RolloutConfig) -> dict[Key, dict[str, Any]]:
        wanted: list[tuple[tuple[str, str], str]] = [
            (SERVICE, name) for name in (config.stable_service, config.canary_service) if name
        ]
        if config.nginx is not None:
            for stable in config.nginx.stable_ingresses:
                wanted.append((INGRESS, stable))
                wanted.append((INGRESS, model.canary_ingress_name(config.name, stable)))
        if config.istio is not None:
            for ref in config.istio.virtual_services:
                wanted.append((VIRTUAL_SERVICE, ref.name.split(".", 1)[0]))
            if config.istio.destination_rule:
                wanted.append((DESTINATION_RULE, config.istio.destination_rule))
        objects: dict[Key, dict[str, Any]] = {}
        for kind, name in dict.fromkeys(wanted):
            obj = _fetch(self.api, kind, name, self.namespace)
            if obj is not None:
                objects[(kind[1], name)] = obj
        return objects

    def observe(self, name: str) -> LiveRollout:
        """The Rollout now, with its ReplicaSets and routing objects."""
        obj = self.get(name)
        config = model.read_rollout(obj)
        replica_sets = tuple(self.replica_sets(obj))
        return LiveRollout(
            obj,
            config,
            client_status(obj, replica_sets),
            replica_sets,
            self._routing_objects(config),
        )

    def status(self, name: str) -> model.RolloutStatus:
        """The Rollout's status as ``kubectl argo rollouts get`` shows it (a basic canary's
        weight from its ReplicaSets' available pods, as the plugin reads it)."""
        obj = self.get(name)
        if model.read_rollout(obj).traffic_routing:
            return client_status(obj)
        return client_status(obj, self.replica_sets(obj))

    def versions(self, name: str, label: str = waits.VERSION_LABEL) -> dict[str, str]:
        """Pod template hash -> the template's ``label`` value, per ReplicaSet."""
        try:
            rollout = self.get(name)
        except BackendError:
            return {}
        return {
            rs_hash(rs): str(_labels(_template(rs)).get(label, ""))
            for rs in self.replica_sets(rollout)
        }

    def events(self, name: str) -> list[str]:
        """The Kubernetes events of the Rollout, oldest first (the controller records a
        line per step, weight change, scaling and abort)."""
        items = [
            e
            for e in self.api.list("v1", "Event", namespace=self.namespace)
            if (e.get("involvedObject") or {}).get("kind") == model.KIND
            and (e.get("involvedObject") or {}).get("name") == name
        ]

        def when(event: Mapping[str, Any]) -> str:
            return str(
                event.get("lastTimestamp")
                or event.get("eventTime")
                or _meta(event).get("creationTimestamp")
                or ""
            )

        return [
            f"{e.get('type', '')} {e.get('reason', '')}: {e.get('message', '')}".strip()
            for e in sorted(items, key=when)[-MAX_EVENTS:]
        ]

    # -- commands ---------------------------------------------------------------------------

    def command(self, name: str, action: str) -> list[PluginPatch]:
        """Send what ``kubectl argo rollouts <action> <name>`` sends; returns the patches.

        Raises:
            CanaryConfigError: an unknown action.
            BackendError: the Rollout is missing, the API refused a patch, or ``undo``
                found no previous revision.
        """
        if action not in ACTIONS:
            raise CanaryConfigError(f"action={action!r}: must be one of {', '.join(ACTIONS)}")
        rollout = self.get(name)
        replica_sets = self.replica_sets(rollout) if action == "undo" else []
        patches = plugin_patches(rollout, action, replica_sets)
        before = str(_meta(rollout).get("resourceVersion", ""))
        after = before
        for patch in patches:
            try:
                result = self.api.patch(
                    model.API_VERSION,
                    model.KIND,
                    name,
                    self.namespace,
                    patch.body,
                    content_type=patch.content_type,
                    subresource=patch.subresource,
                )
            except Exception as exc:
                raise BackendError(
                    f"kubectl argo rollouts {action} {name}: {patch.describe()} failed "
                    f"(HTTP {status_of(exc)}): {api_error_message(exc)}"
                ) from exc
            after = str(_meta(result).get("resourceVersion", after))
        with self._lock:
            if after != before and any(p.subresource == "status" for p in patches):
                self._unanswered[name] = after
            log = self.commands.setdefault(name, [])
            sent = "; ".join(p.describe() for p in patches) or "nothing to send"
            log.append(f"kubectl argo rollouts {action}: {sent}")
            del log[:-MAX_COMMANDS]
        return patches

    # -- waits ------------------------------------------------------------------------------

    def _stale(self, live: LiveRollout) -> str:
        """Why the status cannot answer yet ("" when it can)."""
        version = str(_meta(live.obj).get("resourceVersion", ""))
        with self._lock:
            unanswered = self._unanswered.get(live.name)
            if unanswered is not None and version != unanswered:
                del self._unanswered[live.name]
                unanswered = None
        if unanswered is not None:
            return "the controller has not answered the last command yet"
        return unobserved(live.obj)

    def wait(
        self,
        name: str,
        until: Callable[[model.RolloutStatus], bool],
        *,
        what: str,
        timeout: float,
    ) -> model.RolloutStatus:
        """Return Rollout ``name``'s status once the controller has seen every change
        made so far, ``until(status)`` holds and what it wrote agrees with the model.

        Raises:
            ConvergenceTimeout: after ``timeout`` seconds, naming ``what``, the deadline's
                flag, the last status (and why it was not enough) and the last events.
            BackendError: the controller refuses the Rollout (``InvalidSpec``), which no
                wait can change.
        """
        seen: list[LiveRollout] = []

        def probe() -> Check:
            try:
                live = self.observe(name)
            except BackendError as exc:
                return Check(False, str(exc))
            seen[:] = [live]
            invalid = live.status.condition(model.INVALID_SPEC)
            if invalid is not None and invalid.status == "True":
                raise BackendError(
                    f"Rollout {self.namespace}/{name} cannot become {what}: the controller "
                    f"refuses its spec (InvalidSpec: {invalid.message})"
                )
            stale = self._stale(live)
            if stale:
                return Check(False, f"{stale}; {live.describe()}")
            if not until(live.status):
                return Check(False, live.describe())
            written = written_check(live)
            return Check(written.done, f"{live.describe()}; {written.status}")

        deadline = (
            f"deadline {timeout:.0f}s: --canary-wait-timeout={self.wait_timeout:.0f}s plus "
            "what is left of a timed pause"
        )
        try:
            return_check = waits.wait_until(
                f"Rollout {self.namespace}/{name}",
                f"{what} ({deadline})",
                probe,
                timeout=timeout,
                max_interval=WAIT_INTERVAL,
            )
        except ConvergenceTimeout as exc:
            raise ConvergenceTimeout(
                exc.what, exc.condition, exc.last_seen + self._evidence(name, seen), exc.waited
            ) from None
        assert return_check.done
        return seen[-1].status

    def _evidence(self, name: str, seen: Sequence[LiveRollout]) -> str:
        text = ""
        if seen and not (seen[-1].obj.get("status") or {}).get("observedGeneration"):
            text += (
                "; the Rollout has no status from a controller: is Argo Rollouts running "
                "(kubectl get pods -n argo-rollouts)?"
            )
        try:
            events = self.events(name)[-5:]
        except Exception as exc:
            events = [f"(events unreadable: {api_error_message(exc)})"]
        if events:
            text += "; last events: " + " | ".join(events)
        return text

    # -- what the data plane must serve ------------------------------------------------------

    def live_objects(self, applied: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The objects traffic is routed by, as they are now: each applied object read back
        (the controller rewrote Services, VirtualServices and DestinationRules), the
        Ingresses the controller created, and in place of each Rollout the ReplicaSets it
        controls (their pods carry ``rollouts-pod-template-hash``)."""
        result: list[dict[str, Any]] = []
        seen: set[tuple[str, str, str]] = set()
        for obj in applied:
            kind = str(obj.get("kind", ""))
            name = str(_meta(obj).get("name", ""))
            if kind == model.KIND:
                rollout = self.get(name)
                result += self.replica_sets(rollout)
                continue
            current = self.api.get(str(obj.get("apiVersion", "")), kind, name, self.namespace)
            if current is not None:
                result.append(current)
                seen.add((str(obj.get("apiVersion", "")), kind, name))
        for ingress in self.api.list(*INGRESS, namespace=self.namespace):
            key = (INGRESS[0], INGRESS[1], str(_meta(ingress).get("name", "")))
            owned = any(
                r.get("kind") == model.KIND for r in _meta(ingress).get("ownerReferences") or []
            )
            if owned and key not in seen:
                result.append(ingress)
        return result

    def notes(self, name: str) -> list[str]:
        """What the Rollout's canary Ingresses route by that it does not ask for (the
        annotations the controller keeps, ``model.retained_annotation_notes``)."""
        live = self.observe(name)
        return model.retained_annotation_notes(live.config, live.objects)

    def diagnostics(self, name: str) -> str:
        """The Rollout for a failure report: status, what the controller has not written,
        ReplicaSets, commands sent, events."""
        try:
            live = self.observe(name)
        except Exception as exc:
            return f"cannot read Rollout {name}: {api_error_message(exc)}"
        lines = [live.describe(), written_check(live).status]
        lines += model.retained_annotation_notes(live.config, live.objects)
        lines += self.commands.get(name, [])
        try:
            lines += self.events(name)[-30:]
        except Exception as exc:
            lines.append(f"(events unreadable: {api_error_message(exc)})")
        return "\n".join(lines)


def controller_missing(api: KubeApi, namespace: str) -> str:
    """Why the cluster cannot run Rollouts ("" when it serves ``rollouts.argoproj.io``):
    a list of Rollouts in the test namespace answers 404 when the CRD is absent.

    Raises:
        BackendError: any other API error (e.g. no permission to list Rollouts).
    """
    try:
        api.list(model.API_VERSION, model.KIND, namespace=namespace)
    except Exception as exc:
        if status_of(exc) == 404:
            return f"the cluster does not serve rollouts.argoproj.io: {INSTALL_HINT}"
        raise BackendError(
            f"cannot list Rollouts in {namespace} ({api_error_message(exc)}): grant the "
            "rollouts.argoproj.io rules of the README's ClusterRole"
        ) from exc
    return ""


__all__ = [
    "ACTIONS",
    "INSTALL_HINT",
    "ClusterRollouts",
    "LiveRollout",
    "PluginPatch",
    "client_status",
    "controller_missing",
    "expected_available",
    "expected_weight",
    "plugin_patches",
    "settled",
    "unobserved",
    "written_check",
]
