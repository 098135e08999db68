"""Bring your own manifests: load, check and prepare YAML written outside pytest-canary.

One job: turn the paths a user names (files, folders, a kustomize directory) into plain
Kubernetes objects the harness can lint and apply, with every mistake reported against the
file and document it came from. The routing checks themselves live in ``lint``.

- A **file** may hold several YAML documents (``---``); empty documents are skipped and a
  ``kind: List`` is expanded into its ``items`` (as ``kubectl apply -f`` does).
- A **folder** contributes its ``*.yaml``, ``*.yml`` and ``*.json`` files in name order, not
  its sub-folders (``kubectl apply -f DIR`` without ``-R``).
- A folder with a ``kustomization.yaml`` (``.yml`` or ``Kustomization``) is rendered with
  ``kubectl kustomize DIR`` (or ``kustomize build DIR`` when only that is installed).

Documents are counted from 1 in messages: ``deploy/shop/ingress.yaml, document 2``.

Example:
    >>> loaded = load("suites/manifests/shop/nginx")            # doctest: +SKIP
    >>> [o["kind"] for o in loaded.objects][:2]                 # doctest: +SKIP
    ['Deployment', 'Deployment']
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from pytest_canary.dataplane.argo_rollouts import read_rollout
from pytest_canary.errors import CanaryConfigError
from pytest_canary.validate import Problem, validate_objects
from pytest_canary.yaml_loader import DEFAULT_LIMITS, YamlBudget, YamlLimits, load_all, read_text

__all__ = [
    "IGNORED_KINDS",
    "KUSTOMIZATION_FILES",
    "LoadedManifests",
    "ManifestWarning",
    "PathsArg",
    "canary_version",
    "check_replicas",
    "check_rollout_bounds",
    "check_schemas",
    "default_host",
    "default_path",
    "load",
    "render_kustomization",
    "rewrite_namespace",
    "schema_problems",
    "split_kinds",
    "workload_versions",
]

PathsArg = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
KUSTOMIZE_TIMEOUT = 60.0

# Kinds that do not decide where a request goes. On a backend that stands in for the
# workloads (local) they are left out with a warning; real clusters get them as they are.
IGNORED_KINDS = frozenset(
    {
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
        "ResourceQuota",
        "LimitRange",
        "Namespace",  # replaced by the test's namespace
    }
)

# Kinds the API server keeps outside namespaces: their metadata.namespace is never set.
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "Node",
        "PersistentVolume",
        "StorageClass",
        "IngressClass",
        "GatewayClass",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PriorityClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    }
)

WORKLOAD_KINDS = ("Deployment", "Rollout")
CLUSTER_DOMAIN = "svc.cluster.local"
# The caps of canary.deploy (spec.py: replicas 1-50 per workload, two workloads): a test
# starts at most this many pods, whoever wrote the manifests.
MAX_REPLICAS = 50
MAX_TOTAL_REPLICAS = 100


class ManifestWarning(UserWarning):
    """Something in your manifests was left out of the test (e.g. a ConfigMap on the local
    backend, which stands in for your workloads and so does not need it)."""


class RetainedRoutingWarning(ManifestWarning):
    """What runs still routes by something your manifests no longer ask for: an
    ingress-nginx canary annotation (``canary-by-header``, ...) that Argo Rollouts keeps on
    its canary Ingress after it left the Rollout's ``additionalIngressAnnotations`` or
    ``canaryIngressAnnotations`` (the controller never removes one)."""


@dataclass
class LoadedManifests:
    """Objects read from the user's paths, each with where it came from.

    Attributes:
        objects: the Kubernetes objects, in file order.
        origins: for each object, ``"<file>, document <n>"`` (or the kustomize directory).
        paths: the paths as given, for messages.
    """

    objects: list[dict[str, Any]] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def origin_of(self, obj: Mapping[str, Any]) -> str:
        """Where ``obj`` (one of :attr:`objects`) was read."""
        for candidate, origin in zip(self.objects, self.origins, strict=True):
            if candidate is obj:
                return origin
        return "(unknown file)"

    def describe(self) -> str:
        """The paths, for messages."""
        return ", ".join(self.paths)


def _as_paths(paths: PathsArg) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    if isinstance(paths, Iterable):
        out = []
        for item in paths:
            if not isinstance(item, (str, os.PathLike)):
                raise CanaryConfigError(
                    f"paths={paths!r}: {item!r} is not a path; give a file or folder path, or a "
                    "list of them"
                )
            out.append(Path(item))
        if not out:
            raise CanaryConfigError("paths=[]: give at least one file or folder of manifests")
        return out
    raise CanaryConfigError(f"paths={paths!r}: must be a file or folder path, or a list of them")


def load(paths: PathsArg, *, limits: YamlLimits = DEFAULT_LIMITS) -> LoadedManifests:
    """Read every Kubernetes object from ``paths`` (files, folders, kustomize folders).

    Everything is read by ``pytest_canary.yaml_loader`` within ``limits``, shared by all the
    files: input size, documents, nesting, expanded size (aliases counted where used), and a
    key given twice in one mapping is an error.

    Raises:
        CanaryConfigError: a path that does not exist, a folder without manifests, YAML that
            does not parse, passes a limit or repeats a key, or a document that is not an
            object, naming the file and the document (counted from 1); a kustomize folder
            that cannot be rendered.
    """
    loaded = LoadedManifests()
    budget = YamlBudget(limits)
    for path in _as_paths(paths):
        loaded.paths.append(str(path))
        if not path.exists():
            raise CanaryConfigError(
                f"manifests path {str(path)!r} does not exist (working directory "
                f"{os.getcwd()}); give a YAML file or a folder of YAML files"
            )
        if path.is_dir():
            kustomization = next(
                (path / name for name in KUSTOMIZATION_FILES if (path / name).is_file()), None
            )
            if kustomization is not None:
                text = render_kustomization(path)
                _read_documents(text, f"kustomize output of {path}", loaded, budget)
                continue
            files = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES
            )
            if len(files) > limits.max_documents:
                raise CanaryConfigError(
                    f"manifests folder {str(path)!r} has {len(files)} manifest files, more "
                    f"than the {limits.max_documents} documents one call reads"
                )
            if not files:
                raise CanaryConfigError(
                    f"manifests folder {str(path)!r} has no *.yaml, *.yml or *.json file (its "
                    "sub-folders are not read: name them one by one)"
                )
            for file in files:
                _read_documents(read_text(file, budget), str(file), loaded, budget)
        else:
            _read_documents(read_text(path, budget), str(path), loaded, budget)
    if not loaded.objects:
        raise CanaryConfigError(
            f"no Kubernetes objects in {loaded.describe()}: every document is empty"
        )
    return loaded


def _read_documents(text: str, source: str, loaded: LoadedManifests, budget: YamlBudget) -> None:
    for index, document in enumerate(load_all(text, source, budget), start=1):
        _add_document(document, f"{source}, document {index}", loaded)


def _add_document(document: object, origin: str, loaded: LoadedManifests) -> None:
    if document is None:
        return  # an empty document ("---" at the end, comments only)
    if not isinstance(document, dict):
        raise CanaryConfigError(
            f"{origin}: got a {type(document).__name__} ({_short(document)}); each document "
            "must be one Kubernetes object: a mapping with apiVersion, kind and metadata"
        )
    kind = document.get("kind")
    if kind == "List" or (isinstance(kind, str) and kind.endswith("List") and "items" in document):
        items = document.get("items")
        if not isinstance(items, list):
            raise CanaryConfigError(f"{origin}: a {kind} must have a list of items")
        for number, item in enumerate(items):
            _add_document(item, f"{origin}, items[{number}]", loaded)
        return
    for key in ("apiVersion", "kind"):
        if not isinstance(document.get(key), str) or not document.get(key):
            raise CanaryConfigError(
                f"{origin}: no {key}; each document must be a Kubernetes object with "
                "apiVersion, kind and metadata.name"
            )
    metadata = document.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        generated = isinstance(metadata, dict) and "generateName" in metadata
        raise CanaryConfigError(
            f"{origin}: {document['kind']} has no metadata.name"
            + (
                "; generateName is not supported (objects must have stable names)"
                if generated
                else ""
            )
        )
    loaded.objects.append(document)
    loaded.origins.append(origin)


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_kustomization(directory: Path) -> str:
    """``kubectl kustomize DIR`` (or ``kustomize build DIR``): the rendered YAML.

    Raises:
        CanaryConfigError: when neither tool is on PATH, or rendering fails (with its
            message), or it takes longer than a minute.
    """
    kubectl = shutil.which("kubectl")
    kustomize = shutil.which("kustomize")
    if kubectl is not None:
        command = [kubectl, "kustomize", str(directory)]
    elif kustomize is not None:
        command = [kustomize, "build", str(directory)]
    else:
        raise CanaryConfigError(
            f"{str(directory)!r} has a kustomization file: rendering it needs `kubectl kustomize` "
            "but neither kubectl nor kustomize is on PATH; install kubectl "
            "(https://kubernetes.io/docs/tasks/tools/) or pass the rendered YAML "
            "(`kubectl kustomize DIR > shop.yaml`)"
        )
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=KUSTOMIZE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CanaryConfigError(
            f"`{' '.join(command)}` did not finish within {KUSTOMIZE_TIMEOUT:.0f}s (does the "
            "kustomization fetch remote resources?)"
        ) from None
    if done.returncode != 0:
        message = done.stderr.strip() or done.stdout.strip() or f"exit code {done.returncode}"
        raise CanaryConfigError(f"`{' '.join(command)}` failed: {message}")
    return done.stdout


# -- checks -------------------------------------------------------------------------------


def schema_problems(loaded: LoadedManifests) -> list[tuple[str, Problem]]:
    """Every schema problem of the objects (``validate.validate_objects``), each with the
    origin (file and document) of its object; kinds without a schema are not problems here
    (see :func:`check_schemas`)."""
    return [
        (origin, problem)
        for obj, origin in zip(loaded.objects, loaded.origins, strict=True)
        for problem in validate_objects([obj])
        if not problem.missing_schema
    ]


def check_schemas(loaded: LoadedManifests) -> None:
    """Schema-check every object (``validate.validate_objects``); one error lists them all.

    A kind ``validate`` has no schema for is not reported here: :func:`split_kinds` decides
    whether the backend understands it (Istio's ``Gateway``), leaves it out with a warning
    or lists it as unsupported.

    Raises:
        CanaryConfigError: every problem, each prefixed by its file and document.
    """
    lines = [f"{origin}: {problem}" for origin, problem in schema_problems(loaded)]
    if lines:
        count = f"{len(lines)} problem" + ("s" if len(lines) != 1 else "")
        raise CanaryConfigError(
            f"{count} in {loaded.describe()} (the schemas of their kinds refuse these):\n"
            + "\n".join(f"  {line}" for line in lines)
        )


def split_kinds(loaded: LoadedManifests, understood: Iterable[str]) -> list[dict[str, Any]]:
    """The objects a backend realises, for a backend that understands only ``understood``.

    Kinds in :data:`IGNORED_KINDS` (ConfigMap, Secret, HPA, ...) are left out with one
    :class:`ManifestWarning` each; any other kind not understood is an error.

    Raises:
        CanaryConfigError: listing every object of a kind the backend cannot realise, with
            its file and document, and what is understood.
    """
    known = set(understood)
    kept: list[dict[str, Any]] = []
    unsupported: list[str] = []
    for obj, origin in zip(loaded.objects, loaded.origins, strict=True):
        kind = str(obj.get("kind"))
        name = str((obj.get("metadata") or {}).get("name", ""))
        if kind in known:
            kept.append(obj)
        elif kind in IGNORED_KINDS:
            warnings.warn(
                ManifestWarning(
                    f"{origin}: {kind}/{name} left out: it does not affect routing and the "
                    "local backend stands in for your workloads with the sample app"
                ),
                stacklevel=3,
            )
        else:
            unsupported.append(f"  {origin}: {obj.get('apiVersion')} {kind}/{name}")
    if unsupported:
        raise CanaryConfigError(
            f"{len(unsupported)} object(s) in {loaded.describe()} of kinds the local backend "
            "does not model:\n"
            + "\n".join(unsupported)
            + f"\nIt understands: {', '.join(sorted(known))}; it leaves out with a warning: "
            f"{', '.join(sorted(IGNORED_KINDS))}. Remove these objects from the paths given "
            "(or run on a cluster backend, which applies them as they are)."
        )
    return kept


def pod_template_labels(obj: Mapping[str, Any]) -> dict[str, str]:
    """The pod labels of a workload's template."""
    template = (obj.get("spec") or {}).get("template") or {}
    return {
        str(k): str(v) for k, v in ((template.get("metadata") or {}).get("labels") or {}).items()
    }


def check_replicas(
    loaded: LoadedManifests,
    *,
    max_replicas: int = MAX_REPLICAS,
    max_total: int = MAX_TOTAL_REPLICAS,
) -> None:
    """Refuse workloads that would start more pods than a test may: ``replicas`` above
    ``max_replicas`` in one Deployment (the cap of ``canary.deploy``) or above ``max_total``
    in all.

    Raises:
        CanaryConfigError: naming the file, the Deployment, its replicas and the cap.
    """
    total = 0
    for obj, origin in zip(loaded.objects, loaded.origins, strict=True):
        if obj.get("kind") not in WORKLOAD_KINDS:
            continue
        replicas = (obj.get("spec") or {}).get("replicas", 1)
        # YAML's 1e9 written as 1000000000.0 is a float; kubectl sends it as JSON 1000000000
        # (Go's encoding/json writes a whole float64 without a fraction), an int32 to the
        # API server: count it as the integer it becomes.
        if isinstance(replicas, float) and replicas.is_integer():
            replicas = int(replicas)
        if isinstance(replicas, bool) or not isinstance(replicas, int):
            continue  # check_schemas reports it
        name = (obj.get("metadata") or {}).get("name")
        if replicas < 0:
            # kubernetes pkg/apis/apps/validation ValidateDeploymentSpec:
            # ValidateNonnegativeField(spec.Replicas) "must be greater than or equal to 0".
            raise CanaryConfigError(
                f"{origin}: {obj['kind']} {name} has replicas: {replicas}; the API server "
                "refuses it: spec.replicas must be greater than or equal to 0"
            )
        if replicas > max_replicas:
            raise CanaryConfigError(
                f"{origin}: {obj['kind']} {name} has replicas: {replicas}; a test starts at "
                f"most {max_replicas} pods per workload (as canary.deploy); lower it for the test"
            )
        canary_scale = _largest_canary_scale(obj, replicas)
        if canary_scale is not None and canary_scale > max_replicas:
            raise CanaryConfigError(
                f"{origin}: {obj['kind']} {name} has a setCanaryScale step that scales the "
                f"canary to {canary_scale} pods; a test starts at most {max_replicas} pods per "
                "workload (as canary.deploy); lower it for the test"
            )
        total += replicas + (canary_scale or 0)
        if total > max_total:
            raise CanaryConfigError(
                f"{origin}: {obj['kind']} {name} brings the pods of {loaded.describe()} to "
                f"{total}; a test starts at most {max_total} pods in all; lower the replicas "
                "for the test"
            )


def check_rollout_bounds(loaded: LoadedManifests) -> None:
    """Refuse an Argo ``Rollout`` beyond pytest-canary's own bounds, which Argo does not
    have: a timed pause longer than a test waits
    (:data:`pytest_canary.rollout_spec.MAX_PAUSE_SECONDS`), more than
    :data:`~pytest_canary.rollout_spec.MAX_STEPS` steps, oversized header routes
    (:attr:`pytest_canary.rollout_spec.Problem.refused_by` ``"pytest-canary"``).

    Raises:
        CanaryConfigError: naming the file, the Rollout, each field (e.g.
            ``spec.strategy.canary.steps[i].pause.duration``), its value and the range.
    """
    lines: list[str] = []
    for obj, origin in zip(loaded.objects, loaded.origins, strict=True):
        if obj.get("kind") != "Rollout" or not isinstance(obj.get("spec"), Mapping):
            continue
        name = (obj.get("metadata") or {}).get("name")
        for problem in read_rollout(obj).bounds:
            lines.append(f"{origin}: Rollout {name}: {problem}")
    if lines:
        raise CanaryConfigError("\n".join(lines))


def _largest_canary_scale(obj: Mapping[str, Any], replicas: int) -> int | None:
    """The most canary pods a Rollout's ``setCanaryScale`` steps ask for: Argo Rollouts
    scales the canary ReplicaSet to ``replicas``, or ``weight`` percent of ``spec.replicas``
    (above 100 too), whatever the traffic weight (argo-rollouts ``utils/replicaset/canary.go``
    ``CalculateReplicaCountsForTrafficRoutedCanary``; its tests scale 4 replicas at weight
    200 to 8 canary pods)."""
    strategy = (obj.get("spec") or {}).get("strategy")
    canary = strategy.get("canary") if isinstance(strategy, Mapping) else None
    steps = canary.get("steps") if isinstance(canary, Mapping) else None
    largest: int | None = None
    for step in steps if isinstance(steps, list) else []:
        scale = step.get("setCanaryScale") if isinstance(step, Mapping) else None
        if not isinstance(scale, Mapping):
            continue
        for key in ("replicas", "weight"):
            value = scale.get(key)
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                continue
            pods = value if key == "replicas" else -(-replicas * value // 100)
            largest = pods if largest is None else max(largest, pods)
    return largest


def workload_versions(
    objects: Iterable[Mapping[str, Any]], version_label: str = "version"
) -> dict[str, str]:
    """Workload name -> the value of its pods' ``version_label``, in file order.

    Raises:
        CanaryConfigError: naming every workload whose pod template lacks the label, or when
            there is no workload at all.
    """
    versions: dict[str, str] = {}
    missing: list[str] = []
    for obj in objects:
        if obj.get("kind") not in WORKLOAD_KINDS:
            continue
        name = str((obj.get("metadata") or {}).get("name", ""))
        labels = pod_template_labels(obj)
        if version_label in labels:
            versions[name] = labels[version_label]
        else:
            missing.append(f"{obj.get('kind')}/{name} (pod labels {labels})")
    if missing:
        raise CanaryConfigError(
            f"version_label={version_label!r}: no such pod label on {', '.join(missing)}; every "
            "workload's pod template must carry it, because versions are read from it (pass "
            "version_label='app.kubernetes.io/version' or the label your pods use)"
        )
    if not versions:
        raise CanaryConfigError(
            "no Deployment in the manifests: there is no version to send traffic to"
        )
    return versions


def selected_versions(
    objects: Iterable[Mapping[str, Any]], service: str, version_label: str = "version"
) -> set[str]:
    """Versions of the workloads whose pods the Service ``service`` selects."""
    found: set[str] = set()
    for svc in objects:
        if svc.get("kind") != "Service" or (svc.get("metadata") or {}).get("name") != service:
            continue
        selector = (svc.get("spec") or {}).get("selector") or {}
        for obj in objects:
            if obj.get("kind") not in WORKLOAD_KINDS:
                continue
            labels = pod_template_labels(obj)
            matched = selector and all(labels.get(k) == v for k, v in selector.items())
            if matched and version_label in labels:
                found.add(labels[version_label])
    return found


def canary_version(
    objects: Sequence[Mapping[str, Any]], version_label: str = "version"
) -> str | None:
    """The version behind the ingress-nginx canary Ingress (``canary: "true"``), when its
    Services select pods of exactly one version; ``None`` otherwise (Istio and Gateway API
    name no canary: give ``expect_split`` a mapping of version -> share)."""
    prefix = "nginx.ingress.kubernetes.io/"
    versions: set[str] = set()
    for obj in objects:
        notes = (obj.get("metadata") or {}).get("annotations") or {}
        if obj.get("kind") != "Ingress" or str(notes.get(prefix + "canary", "")).lower() != "true":
            continue
        spec = obj.get("spec") or {}
        backends = [spec.get("defaultBackend") or {}]
        for rule in spec.get("rules") or []:
            backends += [
                p.get("backend") or {} for p in (rule.get("http") or {}).get("paths") or []
            ]
        for backend in backends:
            name = (backend.get("service") or {}).get("name")
            if name:
                versions |= selected_versions(objects, str(name), version_label)
    return versions.pop() if len(versions) == 1 else None


def routing_hosts(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """Hosts named by Ingress rules, HTTPRoute hostnames and VirtualService hosts, in order."""
    hosts: list[str] = []
    for obj in objects:
        kind, spec = obj.get("kind"), obj.get("spec") or {}
        if kind == "Ingress":
            found = [r.get("host") for r in spec.get("rules") or []]
        elif kind == "HTTPRoute":
            found = list(spec.get("hostnames") or [])
        elif kind == "VirtualService":
            found = list(spec.get("hosts") or [])
        else:
            continue
        hosts += [str(h) for h in found if h and str(h) not in hosts]
    return hosts


def default_host(objects: Iterable[Mapping[str, Any]]) -> str | None:
    """The first host of an Ingress, HTTPRoute or VirtualService (``None`` when none)."""
    hosts = routing_hosts(objects)
    return hosts[0] if hosts else None


def default_path(objects: Iterable[Mapping[str, Any]]) -> str:
    """The path traffic is sent to: the first path of the first Ingress rule, HTTPRoute
    match or VirtualService URI match that names a plain path, else ``/``."""
    for obj in objects:
        kind, spec = obj.get("kind"), obj.get("spec") or {}
        candidates: list[str] = []
        if kind == "Ingress":
            for rule in spec.get("rules") or []:
                for p in (rule.get("http") or {}).get("paths") or []:
                    if p.get("pathType") in ("Prefix", "Exact") and p.get("path"):
                        candidates.append(str(p["path"]))
        elif kind == "HTTPRoute":
            for rule in spec.get("rules") or []:
                for m in rule.get("matches") or []:
                    path = m.get("path") or {}
                    if path.get("type", "PathPrefix") in ("PathPrefix", "Exact") and path.get(
                        "value"
                    ):
                        candidates.append(str(path["value"]))
        elif kind == "VirtualService":
            for route in spec.get("http") or []:
                for m in route.get("match") or []:
                    uri = m.get("uri") or {}
                    value = uri.get("exact") or uri.get("prefix")
                    if value:
                        candidates.append(str(value))
        if candidates:
            return candidates[0]
    return "/"


# -- namespaces ---------------------------------------------------------------------------


def rewrite_namespace(objects: Iterable[Mapping[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """Copies of ``objects`` moved into ``namespace``, references included.

    Every namespaced object gets ``metadata.namespace: namespace``; ``Namespace`` objects are
    dropped (the test owns its namespace). References to a namespace the set itself used
    move along: HTTPRoute ``parentRefs``/``backendRefs`` namespaces, VirtualService
    ``gateways`` written ``<namespace>/<name>``, and Service names written as
    ``<service>.<namespace>.svc.cluster.local`` in VirtualService and DestinationRule hosts.
    References to other namespaces are kept as they are.

    Example:
        >>> moved = rewrite_namespace([{"apiVersion": "v1", "kind": "Service",
        ...     "metadata": {"name": "shop", "namespace": "prod"}}], "canary-t1")
        >>> moved[0]["metadata"]
        {'name': 'shop', 'namespace': 'canary-t1'}
    """
    items = [copy.deepcopy(dict(o)) for o in objects]
    old = {
        str((o.get("metadata") or {}).get("namespace"))
        for o in items
        if (o.get("metadata") or {}).get("namespace")
    }

    def ns(value: object) -> object:
        return namespace if isinstance(value, str) and value in old else value

    def host(value: object) -> object:
        if not isinstance(value, str):
            return value
        parts = value.split(".")
        suffix = ".".join(parts[2:])
        if len(parts) >= 2 and parts[1] in old and suffix in ("", "svc", CLUSTER_DOMAIN):
            parts[1] = namespace
            return ".".join(parts)
        return value

    out: list[dict[str, Any]] = []
    for obj in items:
        kind = obj.get("kind")
        if kind == "Namespace":
            continue
        if kind not in CLUSTER_SCOPED:
            obj.setdefault("metadata", {})["namespace"] = namespace
        spec = obj.get("spec")
        if isinstance(spec, dict):
            _rewrite_references(str(kind), spec, ns, host)
        out.append(obj)
    return out


def _rewrite_references(kind: str, spec: dict[str, Any], ns: Any, host: Any) -> None:
    if kind in ("HTTPRoute", "GRPCRoute"):
        for ref in spec.get("parentRefs") or []:
            if "namespace" in ref:
                ref["namespace"] = ns(ref["namespace"])
        for rule in spec.get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                if "namespace" in ref:
                    ref["namespace"] = ns(ref["namespace"])
    elif kind == "VirtualService":
        spec["hosts"] = [host(h) for h in spec.get("hosts") or []]
        if "gateways" in spec:
            spec["gateways"] = [_gateway_ref(g, ns) for g in spec["gateways"] or []]
        for section in ("http", "tcp", "tls"):
            for route in spec.get(section) or []:
                for match in route.get("match") or []:
                    if "gateways" in match:
                        match["gateways"] = [_gateway_ref(g, ns) for g in match["gateways"] or []]
                for dest in route.get("route") or []:
                    target = dest.get("destination") or {}
                    if "host" in target:
                        target["host"] = host(target["host"])
    elif kind == "DestinationRule" and "host" in spec:
        spec["host"] = host(spec["host"])


def _gateway_ref(value: object, ns: Any) -> object:
    if isinstance(value, str) and "/" in value:
        gw_namespace, _, name = value.partition("/")
        return f"{ns(gw_namespace)}/{name}"
    return value
