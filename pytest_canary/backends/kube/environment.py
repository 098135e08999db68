"""One test's namespace on a cluster, following the data flow: objects are bound and applied in
make-before-break order (:mod:`~.apply`), traffic enters where a user's would
(:mod:`~.entry`), every change waits until the data plane serves what the models say
(:mod:`~.plan`, :mod:`~.signals`, :mod:`~.converge`), a failure collects its evidence
(:mod:`~.diagnostics`), and teardown deletes or keeps the namespace (:mod:`~.keep`).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from pytest_canary.apps import VersionReader
from pytest_canary.backends import waits
from pytest_canary.backends.base import Diagnostics, Entry, Environment
from pytest_canary.backends.kube import diagnostics as diagnostics_module
from pytest_canary.backends.kube.api import Key, KubeApi, api_error_message, key_of
from pytest_canary.backends.kube.apply import (
    ROUTING_RANK,
    Applier,
    adapt,
    api_failure,
    app_label,
    rank,
    refuse_unapplicable,
)
from pytest_canary.backends.kube.converge import Convergence, EntryProbe
from pytest_canary.backends.kube.entry import EntryPoints, EntryServices, gateway_address, slug
from pytest_canary.backends.kube.hosts import routed_hosts
from pytest_canary.backends.kube.keep import set_routing_aside
from pytest_canary.backends.kube.namespace import MESH_GROUPS, namespace_for, namespace_object
from pytest_canary.backends.kube.options import KubeOptions
from pytest_canary.backends.kube.plan import (
    Dataplane,
    DataplanePlan,
    plan_for,
    routing_dataplane,
    service_plan,
)
from pytest_canary.backends.kube.ready import Readiness
from pytest_canary.backends.kube.rollouts import ClusterRollouts, controller_missing
from pytest_canary.backends.kube.rollouts import settled as rollout_settled
from pytest_canary.backends.kube.signals import (
    ConfigSignals,
    PodsOf,
    controller_pods_of,
    gateway_pods_of,
    pod_ready,
)
from pytest_canary.backends.kube.sweep import LeaseRenewer
from pytest_canary.backends.owner import Owner
from pytest_canary.dataplane import argo_rollouts as rollout_model
from pytest_canary.errors import BackendError, CanaryConfigError
from pytest_canary.manifests import Manifest
from pytest_canary.spec import ReleaseSpec


class Session(Protocol):
    """What an environment uses of the session's backend
    (:class:`~pytest_canary.backends.kube.backend.KubeBackend`)."""

    api: KubeApi
    options: KubeOptions
    entry_points: EntryPoints
    run_id: str
    owner: Owner
    lease_seconds: float
    signals: ConfigSignals
    leases: LeaseRenewer
    kept: list[str]

    def opened(self, env: KubeEnvironment) -> None:
        """The environment created its namespace."""

    def closed(self, env: KubeEnvironment) -> None:
        """The environment was closed."""

    def prepare(self, objects: Sequence[Mapping[str, Any]]) -> None:
        """Called before objects are applied."""

    def gateway_selector(self) -> dict[str, str] | None:
        """Pod selector of the shared gateway Service."""

    def hold_hosts(self, hosts: Iterable[str], owner: str) -> list[Any]:
        """Locks on virtual hosts."""

    def node_endpoint(self, node_port: int) -> tuple[str, int]:
        """(host, port) reaching a nodePort."""

    def ensure_argo_rollouts(self) -> None:
        """Make the Argo Rollouts controller run where the backend installs it (kind)."""


SERVICE_ENTRY_STRATEGIES = ("replicas", "bluegreen", "rolling")
"""Strategies whose traffic enters through a NodePort Service (kube-proxy)."""


def _service_entry(spec: ReleaseSpec) -> bool:
    """Whether the release's traffic enters through a NodePort Service: the strategies of
    :data:`SERVICE_ENTRY_STRATEGIES` and an Argo Rollouts basic canary (no traffic router:
    one Service in front of every pod, split by replica counts)."""
    return spec.strategy in SERVICE_ENTRY_STRATEGIES or (
        spec.strategy == "rollouts" and spec.traffic is None
    )


def _entry_key(spec: ReleaseSpec, points: EntryPoints) -> str:
    """The ``--canary-entry-url`` key of a release: its strategy, or for ``rollouts`` the
    traffic router it uses (``nginx``, ``istio``) unless a ``rollouts=`` URL is given."""
    if spec.strategy == "rollouts" and spec.traffic and "rollouts" not in points.urls:
        return spec.traffic
    return spec.strategy


def _rollouts(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of the Argo Rollouts among ``objects``."""
    return [
        str(key_of(o)[2])
        for o in objects
        if key_of(o)[:2] == (rollout_model.GROUP, rollout_model.KIND)
    ]


class KubeEnvironment(Environment):
    """One test's namespace on a cluster. Created lazily on the first apply."""

    def __init__(self, backend: Session, test_name: str) -> None:
        self.backend = backend
        self.api = backend.api
        self.options = backend.options
        self.test_name = test_name
        self.namespace = namespace_for(test_name)
        self.failed = False
        self._created = False
        self._closed = False
        self._mesh = False
        self._kept = False
        self._namespace_lock = threading.Lock()
        ready = Readiness(self.api, self.namespace, timeout=self.options.wait_timeout)
        self.applier = Applier(self.api, self.namespace, ready)
        self.entries = EntryServices(
            self.api, self.namespace, ready, pool=backend.entry_points.node_port_pool
        )
        self.convergence = Convergence(
            lambda: self.api.list("v1", "Pod", namespace=self.namespace),
            timeout=self.options.dataplane_timeout,
        )
        self._specs: dict[str, ReleaseSpec] = {}  # by release name (the objects' app label)
        self._hosts: set[str] = set()
        self._locks: list[Any] = []
        # canary.apply: the data plane your manifests route through (None: a Service entry
        # for _manifest_target).
        self._manifest_dataplane: Dataplane | None = None
        self._manifest_target: str | None = None
        # Argo Rollouts: the cluster's controller, driven as kubectl argo rollouts does.
        self.rollouts = ClusterRollouts(
            self.api, self.namespace, wait_timeout=self.options.wait_timeout
        )
        self._argo_missing: str | None = None

    # -- namespace ------------------------------------------------------------------------

    def record_failure(self) -> None:
        """The test failed: ``--canary-keep=failed`` keeps this namespace."""
        self.failed = True

    def _namespace_object(self) -> dict[str, Any]:
        return namespace_object(
            self.namespace,
            run_id=self.backend.run_id,
            test_name=self.test_name,
            owner=self.backend.owner,
            lease_seconds=self.backend.lease_seconds,
            now=time.time(),
            mesh=self._mesh,
            kept=self._kept,
        )

    def _write_namespace(self) -> None:
        with self._namespace_lock:
            self.api.apply(self._namespace_object())

    def renew_lease(self) -> None:
        """Renew this namespace's lease (the whole object: server-side apply). Never after
        :meth:`close` began: an apply to a deleted namespace would create it again."""
        with self._namespace_lock:
            if self._created and not self._closed:
                self.api.apply(self._namespace_object())

    def _ensure_namespace(self, objects: Sequence[Mapping[str, Any]]) -> None:
        mesh = any(key_of(o)[0] in MESH_GROUPS for o in objects)
        if self._created and (self._mesh or not mesh):
            return
        self._mesh = self._mesh or mesh
        try:
            self._write_namespace()
        except Exception as exc:
            raise api_failure(f"creating namespace {self.namespace}", exc) from exc
        self._created = True
        self.backend.opened(self)

    def check_health(self) -> None:
        """Re-raise a failure of the lease renewal thread."""
        self.backend.leases.check()

    # -- apply ----------------------------------------------------------------------------

    def _adapt(self, objects: Sequence[Manifest]) -> list[dict[str, Any]]:
        istio_gateways = any(key_of(o)[:2] == ("networking.istio.io", "Gateway") for o in objects)
        selector = self.backend.gateway_selector() if istio_gateways else None
        adapted = []
        for obj in objects:
            group, kind, _ = key_of(obj)
            if kind == "Namespace" or (group == "" and kind == "Node"):
                raise BackendError(
                    f"{kind}/{key_of(obj)[2]}: cluster-scoped objects are not applied per test"
                )
            adapted.append(
                adapt(
                    obj,
                    self.namespace,
                    ingress_class=self.options.ingress_class,
                    gateway=self.options.gateway,
                    gateway_selector=selector,
                )
            )
        return adapted

    def apply(self, objects: Sequence[Manifest]) -> None:
        self._apply_objects(objects, prune_all=False)

    def _apply_objects(self, objects: Sequence[Manifest], *, prune_all: bool) -> None:
        """Make ``objects`` the desired state. Objects applied before and no longer listed are
        deleted: those of the releases being applied (their ``app`` label), or with
        ``prune_all`` every one (a user's manifest set replaces the previous set)."""
        if self._closed:
            raise BackendError(f"environment {self.namespace} is closed")
        wanted = {key_of(o): o for o in self._adapt(objects)}
        hosts = routed_hosts(wanted.values()) - self._hosts
        self._locks += self.backend.hold_hosts(hosts, f"namespace {self.namespace}")
        self._hosts |= hosts
        self._ensure_namespace(list(wanted.values()))
        self.backend.prepare(list(wanted.values()))
        if _rollouts(list(wanted.values())):
            self.applier.ready.rollout_pods = True
        stale = self.applier.stale(wanted, prune_all=prune_all)
        deferred = self.applier.make(wanted)
        self.entries.follow(_services(wanted))
        # Break: routing first; once the data plane no longer uses them, the rest.
        self.applier.delete_routing(stale)
        releases = {app_label(o) for o in wanted.values()}
        spec = self._specs.get(next(iter(releases)) or "") if len(releases) == 1 else None
        if (stale or deferred) and spec is not None and spec.strategy != "rollouts":
            self._converge(spec, list(wanted.values()))
        self.applier.finish(stale, deferred)

    # -- entry ----------------------------------------------------------------------------

    def _services(self) -> dict[str, dict[str, Any]]:
        return _services(self.applier.applied)

    def entry(self, spec: ReleaseSpec) -> Entry:
        if _service_entry(spec):
            target = self._entry_target(spec)
            service = self._services()[target]
            claimed = self.entries.claim(target, waits.service_selector(service), service, target)
            host, port = self.backend.node_endpoint(claimed.node_port)
            return Entry(
                url=f"http://{host}:{port}",
                per_connection=True,
                description=f"NodePort Service {self.namespace}/{claimed.name} "
                f"({claimed.node_port}, selector of Service {target}) at {host}:{port}",
            )
        points = self.backend.entry_points
        if (
            spec.strategy == "gateway"
            and not points.has_url("gateway")
            and not self.options.gateway
        ):
            url = self._gateway_address()
            return Entry(
                url=url, host=spec.host, description=f"Gateway address {url} (Host: {spec.host})"
            )
        key = _entry_key(spec, points)
        url = points.url_for(key)
        router = spec.traffic if spec.strategy == "rollouts" else spec.strategy
        what = "ingress-nginx" if router == "nginx" else "Istio ingress gateway"
        return Entry(url=url, host=spec.host, description=f"{what} at {url} (Host: {spec.host})")

    def relay_entry(self, spec: ReleaseSpec, source: str) -> Entry:
        """The frontend pods of version ``source`` (``{name}-frontend``, manifests/istio.py),
        reached through a NodePort Service of their own; they call the release in-mesh."""
        frontend = f"{spec.name}-frontend"
        service = self._services().get(frontend)
        if service is None:
            raise BackendError(
                f"no Service {frontend} in {self.namespace}: deploy the release with source=True"
            )
        selector = waits.service_selector(service) | {waits.VERSION_LABEL: source}
        claimed = self.entries.claim(f"{frontend}-{slug(source)}", selector, service, None)
        host, port = self.backend.node_endpoint(claimed.node_port)
        return Entry(
            url=f"http://{host}:{port}",
            description=f"frontend {source} through NodePort Service {self.namespace}/"
            f"{claimed.name} at {host}:{port}",
            relay=f"http://{spec.name}.{self.namespace}.svc.cluster.local{spec.path}",
        )

    def ready_pods(self, spec: ReleaseSpec) -> dict[str, int]:
        counts: dict[str, int] = {}
        for pod in self.api.list(
            "v1", "Pod", namespace=self.namespace, label_selector=f"app={spec.name}"
        ):
            if pod_ready(pod):
                version = str(
                    ((pod.get("metadata") or {}).get("labels") or {}).get(waits.VERSION_LABEL, "")
                )
                counts[version] = counts.get(version, 0) + 1
        return counts

    def _applied_gateway_api_gateways(self) -> list[dict[str, Any]]:
        return [
            o
            for k, o in self.applier.applied.items()
            if k[:2] == ("gateway.networking.k8s.io", "Gateway")
        ]

    def _gateway_address(self) -> str:
        gateways = self._applied_gateway_api_gateways()
        if not gateways:
            raise BackendError(
                "no entry URL for strategy 'gateway' and no Gateway among the applied objects: "
                "pass --canary-entry-url=gateway=http://<gateway address> or "
                "--canary-gateway=<namespace>/<gateway Service>"
            )
        return gateway_address(
            self.api, gateways[0], self.namespace, timeout=self.options.wait_timeout
        )

    def _entry_target(self, spec: ReleaseSpec) -> str:
        services = self._services()
        if spec.name in services:
            return spec.name
        if len(services) == 1:
            return next(iter(services))
        raise BackendError(
            f"cannot tell which Service the traffic of {spec.name!r} enters: none is named "
            f"{spec.name!r} among {', '.join(sorted(services)) or 'no Services'}"
        )

    # -- manifests written by the user (canary.apply) -------------------------------------

    # Every kind, applied as it is: ConfigMaps, HPAs, NetworkPolicies reach the cluster too.
    understood_kinds = None

    def entry_for_objects(self, objects: Sequence[Manifest], host: str | None) -> Entry:
        """Where traffic enters your manifests, chosen from the objects as the local backend
        does: an Ingress -> ingress-nginx; an Istio Gateway a VirtualService binds -> the
        Istio ingress gateway; a Gateway API Gateway an HTTPRoute names -> the gateway entry
        (both bound to the shared gateway by :func:`adapt` when ``--canary-gateway`` is
        set); otherwise a NodePort Service created for the test with the selector of the
        Service named ``host`` (or the first Service), balanced per connection.

        Called before anything is applied: objects this backend cannot apply per test and
        a missing entry URL are reported first. The NodePort entry Service is created now
        (its nodePort is the URL) and waited for once the workloads run.

        Raises:
            CanaryConfigError: cluster-scoped objects or kinds the cluster does not serve.
            BackendError: no entry URL for the data plane, VirtualServices or HTTPRoutes that
                no Gateway of the set binds (they route in-mesh calls only), nothing to
                send traffic to.
        """
        if self._closed:
            raise BackendError(f"environment {self.namespace} is closed")
        self._check_applicable(objects)
        dataplane = routing_dataplane(
            objects, namespace=self.namespace, ingress_class=self.options.ingress_class
        )
        self._manifest_dataplane = dataplane
        if dataplane is not None:
            self._manifest_target = None
            self.entries.drop(keep=None)
            what = {
                "nginx": "ingress-nginx",
                "istio": "the Istio ingress gateway",
                "gateway": "the Gateway API gateway (Istio)",
            }[dataplane.kind]
            points = self.backend.entry_points
            if not points.has_url(dataplane.entry_key):
                raise BackendError(
                    f"your manifests route through {what}, but no entry URL is configured for "
                    f"it: pass --canary-entry-url={dataplane.entry_key}=http://<its address, "
                    "reachable from this machine> (the kind backend sets it up)"
                )
            url = points.url_for(dataplane.entry_key)
            sent = f"Host: {host}" if host else "the URL's Host: no host in your manifests"
            return Entry(url=url, host=host, description=f"{what} at {url} ({sent})")
        services = {key_of(o)[2]: o for o in objects if key_of(o)[:2] == ("", "Service")}
        if not services:
            raise BackendError(
                "nothing to send traffic to: the manifests have no Ingress, Gateway or Service"
            )
        target = host if host is not None and host in services else next(iter(services))
        selector = waits.service_selector(services[target])
        if not selector:
            raise BackendError(
                f"Service {target} has no selector: a NodePort entry cannot mirror it; name "
                "a Service with a selector (host=<Service name>)"
            )
        self._manifest_target = target
        self._ensure_namespace(objects)
        self.entries.drop(keep=target)
        claimed = self.entries.claim(target, selector, services[target], target, wait=False)
        node_host, port = self.backend.node_endpoint(claimed.node_port)
        return Entry(
            url=f"http://{node_host}:{port}",
            per_connection=True,
            description=f"NodePort Service {self.namespace}/{claimed.name} "
            f"({claimed.node_port}, selector of Service {target}) at {node_host}:{port}",
        )

    def apply_manifests(self, objects: Sequence[Manifest], *, version_label: str) -> None:
        """Apply your objects as they are (already moved into this namespace by
        ``byo.rewrite_namespace``), every kind included, with the waits of a rendered
        release: workloads available, Service endpoints ready, Ingresses admitted. A set
        applied before in this test is replaced: what it had and this one lacks is deleted,
        routing first. Pods keep their own ``version_label``; nothing stands in for them.

        Raises:
            CanaryConfigError: cluster-scoped objects or kinds the cluster does not serve.
            BackendError, ConvergenceTimeout: as :meth:`apply`.
        """
        self._check_applicable(objects)
        self._apply_objects(objects, prune_all=True)
        # The NodePort entry was created before its pods existed (entry_for_objects).
        ready = self.applier.ready
        for claimed in self.entries.claimed.values():
            ready.service_endpoints(claimed.name, ready.counter(claimed.selector, objects))

    def await_manifests(
        self,
        objects: Sequence[Manifest],
        entry: Entry,
        *,
        path: str,
        version_label: str,
        version_from: VersionReader,
    ) -> None:
        """Return once the data plane serves your manifests: the routes the objects configure
        (the models' plan, as for a rendered release: the default route plus forced header,
        cookie and virtual-host routes) are each answered, in a short run through ``entry``,
        only by pods of the workloads behind them -- versions read with ``version_from``,
        allowed ones from the pods' ``version_label`` -- without a failed request; the
        ingress-nginx and Envoy configuration is checked too where readable.

        Raises:
            ConvergenceTimeout: naming the entry, the routes and what was last served.
            BackendError: when the routing objects route nothing for the entry's host.
        """
        adapted = self._adapt(objects)
        rollouts = _rollouts(adapted)
        for name in rollouts:
            # The controller walks the Rollout: wait for a state it stays in, then plan
            # from what it wrote (Services, canary Ingress, routes, ReplicaSets).
            self.rollouts.wait(
                name,
                rollout_settled,
                what="at a pause, Healthy or Degraded",
                timeout=self.options.wait_timeout,
            )
        if rollouts:
            adapted = self.rollouts.live_objects(adapted)
        plan = self._manifest_plan(adapted, entry, path, version_label)
        probe = EntryProbe(entry, path=path, classify=version_from.classifier())
        self._await_plan(
            entry,
            plan,
            probe,
            adapted,
            self._manifest_dataplane,
            version_label=version_label,
            own_images=True,
            note=f" (versions read from the {version_from.describe()}, pods' label "
            f"{version_label})",
        )

    def _manifest_plan(
        self, objects: Sequence[Manifest], entry: Entry, path: str, version_label: str
    ) -> DataplanePlan:
        try:
            if self._manifest_target is not None:
                plan = service_plan(objects, self._manifest_target)
            else:
                assert self._manifest_dataplane is not None
                plan = plan_for(
                    objects,
                    self._manifest_dataplane,
                    namespace=self.namespace,
                    host=entry.host,
                    path=path,
                    ingress_class=self.options.ingress_class,
                )
        except BackendError as exc:
            raise BackendError(
                f"cannot tell when the data plane serves your manifests: {exc}"
            ) from exc
        # The plan reads versions from the pod label "version"; yours may be another one.
        routes = tuple(
            dataclasses.replace(
                route,
                versions=frozenset(s[version_label] for s in route.selectors if version_label in s),
            )
            for route in plan.routes
        )
        return dataclasses.replace(plan, routes=routes)

    def _check_applicable(self, objects: Sequence[Manifest]) -> None:
        if _rollouts(objects) and not self.runs_argo_rollouts:
            raise CanaryConfigError(
                f"Rollout {', '.join(_rollouts(objects))} in your manifests: "
                + self.argo_rollouts_missing()
            )
        refuse_unapplicable(self.api, objects)

    # -- data plane -----------------------------------------------------------------------

    def _dataplane(self, spec: ReleaseSpec, objects: Sequence[Mapping[str, Any]]) -> Dataplane:
        if _service_entry(spec):
            return Dataplane("service", self._entry_target(spec))
        found = routing_dataplane(
            objects, namespace=self.namespace, ingress_class=self.options.ingress_class
        )
        if found is None:
            raise BackendError(
                f"strategy {spec.strategy}: no Ingress, Istio Gateway or Gateway API Gateway "
                "among the objects routes its traffic"
            )
        return found

    def await_dataplane(self, spec: ReleaseSpec, objects: Sequence[Manifest]) -> None:
        self._specs[spec.name] = spec
        if _rollouts(objects):
            # The controller rewrote the routing: the plan is made from the objects as they
            # are now (its Services, canary Ingress, VirtualService, ReplicaSets).
            self._converge(spec, self.rollouts.live_objects(self._adapt(objects)))
            return
        self._converge(spec, self._adapt(objects))

    def _converge(self, spec: ReleaseSpec, objects: Sequence[Mapping[str, Any]]) -> None:
        entry = self.entry(spec)
        dataplane = self._dataplane(spec, objects)
        plan = plan_for(
            objects,
            dataplane,
            namespace=self.namespace,
            host=spec.host,
            path=spec.path,
            ingress_class=self.options.ingress_class,
        )
        probe = EntryProbe(entry, path=spec.path, classify=spec.app.classifier())
        self._await_plan(entry, plan, probe, objects, dataplane)

    def _await_plan(
        self,
        entry: Entry,
        plan: DataplanePlan,
        probe: EntryProbe,
        objects: Sequence[Mapping[str, Any]],
        dataplane: Dataplane | None,
        **options: Any,
    ) -> None:
        nginx_pods = envoy_pods = None
        if plan.nginx is not None:
            nginx_pods = self._controller_pods(objects)
        if plan.envoy is not None and dataplane is not None:
            envoy_pods = self._gateway_pods(objects, dataplane)
        signals = self.backend.signals.checks(plan, nginx_pods=nginx_pods, envoy_pods=envoy_pods)

        def hold() -> bool:
            # Only when ingress-nginx's own configuration was read: its workers pick it up
            # one sync interval later.
            return signals.nginx_read

        self.convergence.await_plan(
            entry, plan, probe, signals.checks, hold_for_nginx=hold, **options
        )

    def _controller_pods(self, objects: Sequence[Mapping[str, Any]]) -> PodsOf | None:
        return controller_pods_of(self.api, objects)

    def _gateway_pods(
        self, objects: Sequence[Mapping[str, Any]], dataplane: Dataplane
    ) -> PodsOf | None:
        return gateway_pods_of(
            objects, dataplane, self.backend.gateway_selector(), self.options.gateway
        )

    # -- Argo Rollouts ---------------------------------------------------------------------

    @property
    def runs_argo_rollouts(self) -> bool:
        """Whether the cluster runs the Argo Rollouts controller: on kind it is installed
        when first asked (the pinned add-on); on any cluster its CRD must be served."""
        return not self.argo_rollouts_missing()

    def argo_rollouts_missing(self) -> str:
        """Why this cluster cannot run Rollouts and how to install the controller ("" when
        it can).

        Raises:
            BackendError: the add-on could not be installed (kind), or Rollouts cannot be
                listed for another reason than their absence.
        """
        if self._argo_missing is None:
            self.backend.ensure_argo_rollouts()
            self._argo_missing = controller_missing(self.api, self.namespace)
        return self._argo_missing

    @property
    def rollout_settle_timeout(self) -> float:
        """Seconds the controller gets to act (``--canary-wait-timeout``): pods are pulled
        and started on a cluster."""
        return self.options.wait_timeout

    def rollout_status(self, name: str) -> rollout_model.RolloutStatus:
        """The Rollout's status as ``kubectl argo rollouts get`` shows it."""
        return self.rollouts.status(name)

    def rollout_command(self, name: str, action: str) -> None:
        """The requests ``kubectl argo rollouts <action>`` sends (status merge patches; undo
        a JSON patch of the template), sent through the API."""
        self.rollouts.command(name, action)

    def await_rollout(
        self,
        name: str,
        until: Callable[[rollout_model.RolloutStatus], bool],
        *,
        what: str,
        timeout: float,
    ) -> rollout_model.RolloutStatus:
        """Wait for the Rollout's status (the controller's answer to every change made so
        far) to satisfy ``until``, and for what the controller wrote to agree with the
        model (:func:`~pytest_canary.backends.kube.rollouts.written_check`)."""
        return self.rollouts.wait(name, until, what=what, timeout=timeout)

    def rollout_versions(self, name: str, version_label: str = "version") -> dict[str, str]:
        """Pod template hash -> ``version_label`` of each ReplicaSet the Rollout controls."""
        return self.rollouts.versions(name, version_label)

    def rollout_events(self, name: str) -> list[str]:
        """The Kubernetes events of the Rollout (what the controller recorded)."""
        return self.rollouts.events(name)

    def rollout_notes(self, name: str) -> list[str]:
        """What the Rollout's canary Ingresses route by that it does not ask for."""
        return self.rollouts.notes(name)

    # hold_rollout_timers: the base's no-op. A cluster's clock runs on: a timed pause
    # shorter than an expectation's sampling ends in the middle of it, and the
    # expectation fails with RolloutMoved rather than mixing two splits.

    # -- diagnostics ----------------------------------------------------------------------

    def diagnostics(self) -> Diagnostics:
        if not self._created:
            diag = Diagnostics()
            diag.add("namespace", f"{self.namespace} was never created (nothing applied)")
            return diag
        controller = None
        if any(k[1] == "Ingress" for k in self.applier.applied):
            objects = list(self.applier.applied.values())
            controller = self._controller_pods(objects)
        diag = diagnostics_module.collect(
            self.api,
            self.namespace,
            header=f"{self.namespace} on {self.api.server} (run {self.backend.run_id})",
            history=self.convergence.history,
            unavailable=self.backend.signals.unavailable,
            applied=self.applier.applied,
            entries=[
                f"Service/{c.name}: NodePort {c.node_port} entry selecting {c.selector}"
                for c in self.entries.claimed.values()
            ],
            controller=controller,
        )
        for key in self.applier.applied:
            if key[:2] == (rollout_model.GROUP, rollout_model.KIND):
                diag.add(f"Rollout {key[2]}", self.rollouts.diagnostics(key[2]))
        return diag

    # -- cleanup --------------------------------------------------------------------------

    @property
    def kept(self) -> bool:
        """Whether teardown leaves the namespace in place (``--canary-keep``)."""
        return self.options.keep == "always" or (self.options.keep == "failed" and self.failed)

    def close(self) -> None:
        with self._namespace_lock:  # no lease renewal from here on
            if self._closed:
                return
            self._closed = True
        self.backend.closed(self)
        try:
            if self._created and self.kept:
                self._keep()
            elif self._created:
                self._delete_namespace()
        finally:
            for lock in self._locks:
                lock.release()
            self._locks.clear()

    def _keep(self) -> None:
        """Leave the namespace for inspection, minus its claim on shared hosts."""
        set_routing_aside(self.applier)
        self._kept = True
        try:
            self._write_namespace()
        except Exception as exc:
            raise api_failure(f"marking namespace {self.namespace} kept", exc) from exc
        self.backend.kept.append(self.namespace)

    def _delete_namespace(self) -> None:
        errors: list[str] = []
        # Routing objects first, synchronously: a terminating namespace keeps its Ingress /
        # routes until its pods are gone, and the next test on the same host (the host lock
        # is released right after) would meet them on the shared data plane.
        routing = [k for k in self.applier.applied if rank(k) > ROUTING_RANK]
        for key in sorted(routing, key=rank, reverse=True):
            try:
                self.applier.delete(key)
            except BackendError as exc:
                errors.append(str(exc))
        errors += self.entries.release()
        try:
            self.api.delete("v1", "Namespace", self.namespace)
        except Exception as exc:
            errors.append(f"Namespace {self.namespace}: {api_error_message(exc)}")
        if errors:
            raise BackendError(f"cleanup of {self.namespace} failed: " + "; ".join(errors))


def _services(objects: Mapping[Key, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Core Services by name."""
    return {k[2]: dict(o) for k, o in objects.items() if k[1] == "Service" and k[0] == ""}
