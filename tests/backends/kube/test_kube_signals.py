"""What the live data plane reports, compared with the plan, and which pods are asked.

The recorded answers below are written from the upstream sources, not captured from a live
cluster (none can start here):

- ``/dbg backends get <name>`` prints, indented, one backend of the JSON the ingress-nginx
  controller POSTed to ``/configuration/backends``, or "A backend of this name was not
  found." (ingress-nginx controller-v1.15.1 cmd/dbg/main.go ``backendsGet``;
  internal/ingress/controller/nginx.go ``configureBackends``, which copies
  name, service spec, port, sslPassthrough, sessionAffinityConfig, upstreamHashByConfig,
  load-balance, noServer, trafficShapingPolicy, alternativeBackends and the endpoints'
  address/port): a list of pkg/apis/ingress/types.go ``Backend`` with their json tags.
- ``pilot-agent request GET config_dump?resource=dynamic_route_configs`` prints Envoy's admin
  ``ConfigDump`` with ``RoutesConfigDump.DynamicRouteConfig`` entries (envoy
  api/envoy/admin/v3/config_dump.proto, route/v3/route.proto, route_components.proto); the
  routes as istio 1.30.3 builds them for a gateway (pilot/pkg/networking/core/gateway.go:
  virtual host ``<host>:<port>`` with domains ``[<host>]``; route/route.go: a single
  destination is ``cluster``, several are ``weighted_clusters`` with the VirtualService
  weights, header matches are ``string_match`` exact/prefix/``safe_regex`` or
  ``present_match``; util.go ``AddConfigInfoMetadata``: ``filter_metadata.istio.config``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from conftest import ApiServer, FakeIngress
from pytest_canary.backends.kube import KubeApi, KubeBackend, KubeOptions
from pytest_canary.backends.kube.api import ExecOutput
from pytest_canary.backends.kube.entry import EntryPoints
from pytest_canary.backends.kube.plan import (
    DataplanePlan,
    EnvoyHeader,
    EnvoyRouteWant,
    EnvoyWant,
    NginxWant,
)
from pytest_canary.backends.kube.signals import (
    NON_JSON_TOLERATED,
    ConfigSignals,
    ControllerFlags,
    PodSet,
    controller_flags,
    envoy_route_check,
    nginx_backends_check,
    serves,
)
from pytest_canary.backends.waits import Check
from pytest_canary.harness import Harness

NS = "canary-t-abcde"
MAIN = f"{NS}-kubeapp-stable-80"
CANARY = f"{NS}-kubeapp-canary-80"


def service_spec(track: str) -> dict[str, Any]:
    return {
        "metadata": {"creationTimestamp": None},
        "spec": {
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http"}],
            "selector": {"app": "kubeapp", "track": track},
            "clusterIP": "10.96.41.7",
            "clusterIPs": ["10.96.41.7"],
            "type": "ClusterIP",
            "sessionAffinity": "None",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster",
        },
        "status": {"loadBalancer": {}},
    }


NO_AFFINITY = {"name": "", "mode": "", "cookieSessionAffinity": {"name": ""}}
NO_POLICY = {
    "weight": 0,
    "weightTotal": 0,
    "header": "",
    "headerValue": "",
    "headerPattern": "",
    "cookie": "",
}


def dbg_backends(weight: int = 20, *, alternative: bool = True) -> list[dict[str, Any]]:
    """``/dbg backends all`` of a controller serving the weighted canary of ``NS``."""
    canary = {
        "name": CANARY,
        "service": service_spec("canary"),
        "port": 80,
        "sslPassthrough": False,
        "endpoints": [{"address": "10.244.0.14", "port": "8080"}],
        "sessionAffinityConfig": NO_AFFINITY,
        "upstreamHashByConfig": {"upstream-hash-by-subset-size": 3},
        "noServer": True,
        "trafficShapingPolicy": {
            "weight": weight,
            "weightTotal": 100,
            "header": "X-Canary",
            "headerValue": "",
            "headerPattern": "",
            "cookie": "",
        },
    }
    main: dict[str, Any] = {
        "name": MAIN,
        "service": service_spec("stable"),
        "port": 80,
        "sslPassthrough": False,
        "endpoints": [{"address": "10.244.0.12", "port": "8080"}],
        "sessionAffinityConfig": NO_AFFINITY,
        "upstreamHashByConfig": {"upstream-hash-by-subset-size": 3},
        "noServer": False,
        "trafficShapingPolicy": NO_POLICY,
    }
    if alternative:
        main["alternativeBackends"] = [CANARY]  # omitempty: absent without alternatives
    default = {
        "name": "upstream-default-backend",
        "port": 0,
        "sslPassthrough": False,
        "endpoints": [{"address": "127.0.0.1", "port": "8181"}],
        "sessionAffinityConfig": NO_AFFINITY,
        "upstreamHashByConfig": {},
        "noServer": False,
        "trafficShapingPolicy": NO_POLICY,
    }
    return [canary, main, default]


WANT_20 = NginxWant(
    main=MAIN,
    canary=CANARY,
    policy={
        "weight": 20,
        "weightTotal": 100,
        "header": "X-Canary",
        "headerValue": "",
        "headerPattern": "",
        "cookie": "",
    },
)


# -- ingress-nginx ------------------------------------------------------------------------------


def test_dbg_backends_holding_the_plan_converge() -> None:
    printed = json.dumps(dbg_backends(20), indent=2)  # dbg prints json.Indent(..., "  ")
    from pytest_canary.backends.kube.signals import json_in

    assert nginx_backends_check(json_in(printed), WANT_20) == Check(
        True, f"alternative {CANARY} with {dict(WANT_20.policy)}"
    )


def test_dbg_backends_with_a_stale_weight_do_not_converge() -> None:
    check = nginx_backends_check(dbg_backends(50), WANT_20)
    assert check == Check(False, f"alternative {CANARY} has weight=50 (want 20)")


def test_dbg_backends_without_the_alternative_backend_do_not_converge() -> None:
    check = nginx_backends_check(dbg_backends(20, alternative=False), WANT_20)
    assert check == Check(False, f"backend {MAIN} has no alternative backend yet, want {CANARY}")


def test_only_the_first_alternative_backend_counts() -> None:
    backends = dbg_backends(20)
    backends[1]["alternativeBackends"] = [f"{NS}-other-canary-80", CANARY]
    check = nginx_backends_check(backends, WANT_20)
    assert not check.done and f"want {CANARY} first" in check.status


def test_after_promotion_the_main_backend_must_have_no_alternative() -> None:
    promoted = NginxWant(main=MAIN)
    assert not nginx_backends_check(dbg_backends(20), promoted).done
    assert nginx_backends_check(dbg_backends(20, alternative=False), promoted).done


def test_missing_backends_and_endpoints_are_named() -> None:
    assert nginx_backends_check([], WANT_20) == Check(False, f"no backend {MAIN} yet")
    backends = dbg_backends(20)
    del backends[0]["endpoints"]  # omitempty: no ready endpoint yet
    assert nginx_backends_check(backends, WANT_20) == Check(
        False, f"alternative backend {CANARY} has no endpoints yet"
    )


@pytest.mark.parametrize(
    "data",
    [
        {"backends": []},
        ["not a backend"],
        [{"endpoints": []}],
        "null",
    ],
    ids=["an object", "strings", "no names", "text"],
)
def test_dbg_output_of_an_unexpected_shape_is_a_clear_status_not_a_crash(data: Any) -> None:
    check = nginx_backends_check(data, WANT_20)
    assert not check.done
    assert check.status.startswith("ingress-nginx backends in an unexpected shape")


def test_an_alternative_without_a_policy_object_is_named() -> None:
    backends = dbg_backends(20)
    backends[0]["trafficShapingPolicy"] = None
    assert nginx_backends_check(backends, WANT_20) == Check(
        False, f"alternative backend {CANARY} has no trafficShapingPolicy"
    )


# -- Envoy --------------------------------------------------------------------------------------

FQDN = f"kubeapp.{NS}.svc.cluster.local"
OURS = f"/apis/networking.istio.io/v1/namespaces/{NS}/virtual-service/kubeapp"


def envoy_route(
    headers: Sequence[dict[str, Any]], clusters: dict[str, int] | str, config: str = OURS
) -> dict[str, Any]:
    action: dict[str, Any] = (
        {"cluster": clusters}
        if isinstance(clusters, str)
        else {
            "weighted_clusters": {
                "clusters": [{"name": k, "weight": w} for k, w in clusters.items()]
            }
        }
    )
    action |= {
        "timeout": "0s",
        "max_stream_duration": {"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"},
    }
    match: dict[str, Any] = {"prefix": "/", "case_sensitive": True}
    if headers:
        match["headers"] = list(headers)
    return {
        "match": match,
        "route": action,
        "metadata": {"filter_metadata": {"istio": {"config": config}}},
        "decorator": {"operation": f"{FQDN}:80/*"},
    }


def config_dump(*routes: dict[str, Any], host: str = "foo.bar") -> dict[str, Any]:
    """``pilot-agent request GET config_dump?resource=dynamic_route_configs`` of the Istio
    ingress gateway (route config ``http.8080``: the gateway Service's port 80 targets 8080)."""
    return {
        "configs": [
            {
                "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump.DynamicRouteConfig",
                "version_info": "2026-11-30T12:00:00Z/42",
                "route_config": {
                    "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                    "name": "http.8080",
                    "virtual_hosts": [
                        {"name": "other.example:80", "domains": ["other.example"], "routes": []},
                        {
                            "name": f"{host}:80",
                            "domains": [host],
                            "routes": list(routes),
                            "include_request_attempt_count": True,
                        },
                    ],
                    "validate_clusters": False,
                    "max_direct_response_body_size_bytes": 1048576,
                    "ignore_port_in_host_matching": True,
                },
                "last_updated": "2026-11-30T12:00:01.123Z",
            }
        ]
    }


HEADER_ROUTE = envoy_route(
    [{"name": "canary", "string_match": {"exact": "canary-tester"}}], f"outbound|80|v2|{FQDN}"
)
WANT = EnvoyWant(
    "foo.bar",
    NS,
    (
        EnvoyRouteWant(
            frozenset({EnvoyHeader("canary", "exact", "canary-tester")}),
            {f"outbound|80|v2|{FQDN}": 1.0},
        ),
        EnvoyRouteWant(frozenset(), {f"outbound|80|v1|{FQDN}": 0.9, f"outbound|80|v2|{FQDN}": 0.1}),
    ),
)


def test_envoy_routes_holding_the_plan_converge() -> None:
    dump = config_dump(
        HEADER_ROUTE, envoy_route([], {f"outbound|80|v1|{FQDN}": 90, f"outbound|80|v2|{FQDN}": 10})
    )
    check = envoy_route_check(dump, WANT)
    assert check.done, check.status


def test_weights_are_compared_as_shares_of_their_sum() -> None:
    # Istio passes VirtualService weights through (route.go processWeightedDestination):
    # 9 and 1 are the same split as 90 and 10.
    dump = config_dump(
        HEADER_ROUTE, envoy_route([], {f"outbound|80|v1|{FQDN}": 9, f"outbound|80|v2|{FQDN}": 1})
    )
    assert envoy_route_check(dump, WANT).done


def test_envoy_routes_with_a_stale_weight_do_not_converge() -> None:
    dump = config_dump(
        HEADER_ROUTE, envoy_route([], {f"outbound|80|v1|{FQDN}": 50, f"outbound|80|v2|{FQDN}": 50})
    )
    check = envoy_route_check(dump, WANT)
    assert not check.done
    assert "route 2 of ours" in check.status and "0.5" in check.status and "0.9" in check.status


def test_a_missing_header_route_does_not_converge() -> None:
    dump = config_dump(
        envoy_route([], {f"outbound|80|v1|{FQDN}": 90, f"outbound|80|v2|{FQDN}": 10})
    )
    check = envoy_route_check(dump, WANT)
    assert not check.done and "route 1 of ours" in check.status


def test_a_route_left_by_another_namespace_before_ours_does_not_converge() -> None:
    """A VirtualService a killed run left for the same host merges at the shared gateway;
    its catch-all, built before ours, takes the default requests."""
    leftover = envoy_route(
        [],
        "outbound|80|v1|kubeapp.canary-old-12345.svc.cluster.local",
        "/apis/networking.istio.io/v1/namespaces/canary-old-12345/virtual-service/kubeapp",
    )
    dump = config_dump(
        HEADER_ROUTE,
        leftover,
        envoy_route([], {f"outbound|80|v1|{FQDN}": 90, f"outbound|80|v2|{FQDN}": 10}),
    )
    check = envoy_route_check(dump, WANT)
    assert not check.done
    assert "a route of /apis/networking.istio.io/v1/namespaces/canary-old-12345" in check.status


def test_no_virtual_host_for_the_host_yet() -> None:
    assert envoy_route_check(config_dump(host="elsewhere"), WANT) == Check(
        False, "no Envoy virtual host for foo.bar yet"
    )


@pytest.mark.parametrize(
    ("dump", "says"),
    [
        ({}, "no 'configs' list at the top"),
        ([], "no 'configs' list at the top"),
        (
            {"configs": [{"route_config": {"virtual_hosts": {"a": 1}}}]},
            "virtual_hosts is not a list",
        ),
        (
            config_dump({"match": {"prefix": "/", "headers": [{"name": "x", "grpc_match": {}}]}}),
            "header matcher x: no match kind this check knows",
        ),
        (
            config_dump(
                {
                    "match": {"prefix": "/"},
                    "route": {"weighted_clusters": {"clusters": [{"weight": 1}]}},
                }
            ),
            "a weighted cluster without a name",
        ),
    ],
    ids=["empty", "a list", "hosts not a list", "unknown header matcher", "nameless cluster"],
)
def test_a_config_dump_of_an_unexpected_shape_is_a_clear_status_not_a_crash(
    dump: Any, says: str
) -> None:
    check = envoy_route_check(dump, WANT)
    assert not check.done
    assert (
        check.status.startswith("Envoy config_dump in an unexpected shape") and says in check.status
    )


def test_presence_prefix_and_regex_matchers_are_read() -> None:
    want = EnvoyWant(
        "foo.bar",
        NS,
        (
            EnvoyRouteWant(
                frozenset(
                    {
                        EnvoyHeader("x-beta", "present"),
                        EnvoyHeader("x-user", "prefix", "beta-"),
                        EnvoyHeader("region", "regex", "cd|sz"),
                    }
                ),
                {f"outbound|80|v2|{FQDN}": 1.0},
            ),
        ),
    )
    route = envoy_route(
        [
            {"name": "x-beta", "present_match": True},
            {"name": "x-user", "string_match": {"prefix": "beta-"}},
            {"name": "region", "string_match": {"safe_regex": {"regex": "cd|sz"}}},
        ],
        f"outbound|80|v2|{FQDN}",
    )
    assert envoy_route_check(config_dump(route), want).done


# -- which ingress-nginx controller ---------------------------------------------------------------


def controller_pod(
    name: str, namespace: str, args: Sequence[str], *, ready: bool = True
) -> dict[str, Any]:
    """A controller pod as deploy/static/provider/*/deploy.yaml renders it: the same labels
    for every controller, the class in the container's args."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "ingress-nginx",
                "app.kubernetes.io/component": "controller",
                "app.kubernetes.io/instance": "ingress-nginx",
            },
        },
        "spec": {
            "containers": [
                {
                    "name": "controller",
                    "image": "registry.k8s.io/ingress-nginx/controller:v1.15.1",
                    "args": [
                        "/nginx-ingress-controller",
                        "--election-id=ingress-nginx-leader",
                        *args,
                    ],
                }
            ]
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_controller_flags_are_read_from_the_container_args() -> None:
    assert controller_flags(controller_pod("a", "x", [])) == ControllerFlags()
    pod = controller_pod(
        "b",
        "x",
        [
            "--controller-class",
            "k8s.io/internal",
            "--ingress-class=internal",
            "--watch-ingress-without-class",
            "--ingress-class-by-name=true",
        ],
    )
    assert controller_flags(pod) == ControllerFlags("k8s.io/internal", "internal", True, True)
    assert (
        controller_flags({"spec": {"containers": [{"name": "sidecar", "args": ["--x"]}]}}) is None
    )


@pytest.mark.parametrize(
    ("ingress", "flags", "served"),
    [
        ({"spec": {"ingressClassName": "internal"}}, ControllerFlags("k8s.io/internal"), True),
        ({"spec": {"ingressClassName": "internal"}}, ControllerFlags(), False),
        (
            {"spec": {"ingressClassName": "internal"}},
            ControllerFlags(ingress_class="internal", class_by_name=True),
            True,
        ),
        (
            {"metadata": {"annotations": {"kubernetes.io/ingress.class": "nginx"}}},
            ControllerFlags(),
            True,
        ),
        (
            {"metadata": {"annotations": {"kubernetes.io/ingress.class": "public"}}},
            ControllerFlags(),
            False,
        ),
        ({}, ControllerFlags(watch_without_class=True), True),
        ({}, ControllerFlags(), False),
    ],
    ids=[
        "class by controller",
        "other controller",
        "class by name",
        "annotation",
        "other annotation",
        "no class watched",
        "no class ignored",
    ],
)
def test_which_controller_serves_an_ingress_follows_store_go(
    ingress: dict[str, Any], flags: ControllerFlags, served: bool
) -> None:
    # IngressClass "internal" has spec.controller k8s.io/internal.
    assert serves(flags, ingress, "k8s.io/internal" if "spec" in ingress else None) is served


class ExecApi(KubeApi):
    """The kube backend's API on the emulator, with ``exec`` answered by a fake controller
    (the emulator speaks no exec websocket); records which pods were asked."""

    def __init__(
        self, api_client: Any, answer: Callable[[str, str, Sequence[str]], ExecOutput | str]
    ) -> None:
        super().__init__(api_client, request_timeout=5.0)
        self.answer = answer
        self.asked: list[str] = []
        self.commands: list[str] = []

    def exec(
        self,
        pod: str,
        namespace: str,
        command: Sequence[str],
        *,
        container: str | None = None,
        limit: int = 0,
    ) -> ExecOutput:
        self.asked.append(f"{namespace}/{pod}")
        self.commands.append(" ".join(command))
        answer = self.answer(pod, namespace, command)
        return answer if isinstance(answer, ExecOutput) else ExecOutput(answer)


def dbg_get(backends: list[dict[str, Any]], command: Sequence[str]) -> str:
    """``/dbg backends get <name>`` of a controller holding ``backends`` (cmd/dbg/main.go
    ``backendsGet``: the backend, indented, or a line saying there is none)."""
    assert list(command[:3]) == ["/dbg", "backends", "get"], command
    for backend in backends:
        if backend["name"] == command[3]:
            return json.dumps(backend, indent=2) + "\n"
    return "A backend of this name was not found.\n"


def exec_api(api_server: ApiServer, answer: Callable[..., ExecOutput | str]) -> ExecApi:
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = api_server.url
    return ExecApi(client.ApiClient(configuration), answer)


def ingress_class(name: str, controller: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": name},
        "spec": {"controller": controller},
    }


def test_signals_come_from_the_controller_of_the_ingress_class_not_every_labelled_pod(
    api_server: ApiServer, fake_ingress: FakeIngress
) -> None:
    """A public and an internal controller with the same pod labels; the release uses
    IngressClass ``internal``. Only the internal controller's configuration is read (the
    public one knows nothing of the release and would never converge)."""
    api_server.put(ingress_class("public", "k8s.io/public"), "ingressclasses")
    api_server.put(ingress_class("internal", "k8s.io/internal"), "ingressclasses")
    api_server.put(
        controller_pod(
            "public-7d9f",
            "ingress-public",
            ["--controller-class=k8s.io/public", "--ingress-class=public"],
        ),
        "pods",
    )
    api_server.put(
        controller_pod(
            "internal-5c4b",
            "ingress-internal",
            ["--controller-class=k8s.io/internal", "--ingress-class=internal"],
        ),
        "pods",
    )
    fake_ingress.ingress_class = "internal"
    namespace_of: list[str] = []

    def answer(pod: str, namespace: str, command: Sequence[str]) -> str:
        if pod.startswith("public"):
            return dbg_get([], command)
        backends = json.loads(json.dumps(dbg_backends(20)).replace(NS, namespace_of[0]))
        return dbg_get(backends, command)

    api = exec_api(api_server, answer)
    backend = KubeBackend(
        api,
        KubeOptions(ingress_class="internal", wait_timeout=5.0, dataplane_timeout=5.0),
        EntryPoints(urls={"*": fake_ingress.url}),
        run_id="run-1",
    )
    try:
        env = backend.environment("test_two_controllers")
        namespace_of.append(env.namespace)
        with Harness(env) as canary:
            canary.deploy("nginx", stable="1.0", canary="2.0", weight=20)
        assert api.asked and set(api.asked) == {"ingress-internal/internal-5c4b"}
        main, canary = (f"{env.namespace}-kubeapp-{t}-80" for t in ("stable", "canary"))
        # one backend at a time, never the whole list of a busy shared controller
        assert set(api.commands) == {
            f"/dbg backends get {main}",
            f"/dbg backends get {canary}",
        }
        assert backend.signals.unavailable == {}
    finally:
        backend.close()


def test_a_class_no_controller_serves_gives_its_signal_up_with_the_reason(
    api_server: ApiServer,
) -> None:
    """Given up for that IngressClass only: another class's controller is still read."""
    api_server.put(ingress_class("internal", "k8s.io/internal"), "ingressclasses")
    api_server.put(ingress_class("nginx", "k8s.io/ingress-nginx"), "ingressclasses")
    api_server.put(
        controller_pod("public-7d9f", "ingress-public", ["--controller-class=k8s.io/public"]),
        "pods",
    )
    api_server.put(controller_pod("nginx-1", "ingress-nginx", []), "pods")
    api = exec_api(api_server, lambda pod, ns, command: "[]")
    signals = ConfigSignals(api)
    from pytest_canary.backends.kube.signals import nginx_controller_pods

    def read(class_name: str) -> Check:
        ingress = {"spec": {"ingressClassName": class_name}}
        return signals.read(
            lambda: nginx_controller_pods(signals.api, ingress),
            [["/dbg"]],
            lambda answers: Check(True, "read"),
        ).check

    key = "ingress-nginx (the ingress-nginx controller of IngressClass internal (k8s.io/internal))"
    assert read("internal") == Check(True, f"{key}: configuration not readable, skipped")
    assert signals.unavailable[key].startswith(
        "no pod of the ingress-nginx controller of IngressClass internal (k8s.io/internal) "
        "among the pods"
    )
    assert read("nginx") == Check(True, "nginx-1: read")
    assert api.asked == ["ingress-nginx/nginx-1"]
    api.close()


def test_the_controller_follows_the_class_the_api_server_stored(api_server: ApiServer) -> None:
    """An Ingress sent without a class gets the default IngressClass from the API server's
    DefaultIngressClass admission: the controller of that class serves it."""
    from pytest_canary.backends.kube.signals import nginx_controller_pods

    api_server.put(ingress_class("internal", "k8s.io/internal"), "ingressclasses")
    api_server.put(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}, "namespaces"
    )
    sent = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "kubeapp", "namespace": NS},
        "spec": {"rules": [{"host": "foo.bar"}]},
    }
    stored = json.loads(json.dumps(sent))
    stored["spec"]["ingressClassName"] = "internal"
    api_server.put(stored, "ingresses")
    api = api_server.api()
    pods = nginx_controller_pods(api, sent)
    api.close()
    assert pods.what == "the ingress-nginx controller of IngressClass internal (k8s.io/internal)"
    internal = controller_pod(
        "internal-1", "ingress-internal", ["--controller-class=k8s.io/internal"]
    )
    without_class = controller_pod("nginx-1", "ingress-nginx", ["--watch-ingress-without-class"])
    assert pods.keep is not None
    assert pods.keep(internal) and not pods.keep(without_class)


def test_a_missing_backend_is_not_there_yet_and_a_warning_on_stderr_is_no_matter(
    api_server: ApiServer,
) -> None:
    api_server.put(controller_pod("controller-0", "ingress-nginx", []), "pods")
    held: list[dict[str, Any]] = []

    def answer(pod: str, ns: str, command: Sequence[str]) -> ExecOutput:
        return ExecOutput(dbg_get(held, command), "W1130 12:00:00 deprecated flag\n")

    api = exec_api(api_server, answer)
    check = (
        ConfigSignals(api)
        .checks(
            DataplanePlan(routes=(), nginx=WANT_20),
            nginx_pods=lambda: PodSet(
                "the controller",
                "app.kubernetes.io/component=controller",
                None,
                "controller",
                signal="ingress-nginx",
            ),
            envoy_pods=None,
        )
        .checks[0]
    )
    assert check() == Check(False, f"controller-0: no backend {MAIN} yet")
    held.extend(dbg_backends(20))
    assert check() == Check(True, f"controller-0: alternative {CANARY} with {dict(WANT_20.policy)}")
    api.close()


def test_answers_that_are_not_json_leave_the_signal_out_of_one_wait_only(
    api_server: ApiServer,
) -> None:
    """/dbg prints a passing error as plain text and exits 0: the look is not done; after
    NON_JSON_TOLERATED such answers in a row the signal is left out of this wait, and the
    next wait reads it again."""
    api_server.put(controller_pod("controller-0", "ingress-nginx", []), "pods")
    missing = "A backend of this name was not found.\n"
    answers = ["dial tcp 127.0.0.1:10246: connect: connection refused", missing]
    api = exec_api(api_server, lambda pod, ns, command: answers.pop(0) if answers else "oops")
    signals = ConfigSignals(api)
    pods = PodSet("the controller", "app.kubernetes.io/component=controller", None, "controller")
    plan = DataplanePlan(routes=(), nginx=NginxWant(main="m"))

    def wait() -> Callable[[], Check]:
        one = signals.checks(plan, nginx_pods=lambda: pods, envoy_pods=None)
        return one.checks[0]

    look = wait()
    first = look()
    assert not first.done and "connection refused" in first.status
    assert look() == Check(False, "controller-0: no backend m yet")
    for _ in range(NON_JSON_TOLERATED - 1):
        assert not look().done
    skipped = look()
    assert skipped.done and "not JSON" in skipped.status
    assert look() == Check(True, "the controller: answers not JSON, skipped in this wait")
    assert signals.unavailable == {}  # not given up for the session
    answers.append(missing)
    assert wait()() == Check(False, "controller-0: no backend m yet")  # the next wait reads
    api.close()


# -- which gateway pods ---------------------------------------------------------------------------


def gateway_pod(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "istio-proxy"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_a_gateway_api_gateway_is_read_from_the_deployment_istio_made_for_it(
    api_server: ApiServer, make_backend: Callable[..., KubeBackend]
) -> None:
    """Without a shared gateway, Istio deploys a gateway per Gateway: its pods carry
    ``gateway.networking.k8s.io/gateway-name=<Gateway>`` (istio 1.30.3 kube-gateway.yaml).
    Another Gateway's pods, and Istio's default ingress gateway, are never asked."""
    from pytest_canary import manifests
    from pytest_canary.backends.kube.plan import Dataplane
    from pytest_canary.spec import build_spec

    backend = make_backend()
    env = backend.environment("test_gateway_pods")
    objects = env._adapt(manifests.render(build_spec("gateway", "1.0", "2.0", weight=20)))
    ns = env.namespace
    api_server.put(
        gateway_pod(
            "kubeapp-gateway-istio-6f7",
            ns,
            {"gateway.networking.k8s.io/gateway-name": "kubeapp-gateway"},
        ),
        "pods",
    )
    api_server.put(
        gateway_pod(
            "other-gateway-istio-1a2",
            ns,
            {"gateway.networking.k8s.io/gateway-name": "other-gateway"},
        ),
        "pods",
    )
    api_server.put(
        gateway_pod("istio-ingressgateway-9", "istio-system", {"istio": "ingressgateway"}), "pods"
    )
    pods_of = env._gateway_pods(objects, Dataplane("gateway", f"{ns}/kubeapp-gateway"))
    pods = pods_of()
    listed = backend.api.list("v1", "Pod", namespace=pods.namespace, label_selector=pods.selector)
    assert [p["metadata"]["name"] for p in listed] == ["kubeapp-gateway-istio-6f7"]
    assert pods.container == "istio-proxy"


def test_an_istio_gateway_is_read_from_the_pods_it_selects(
    make_backend: Callable[..., KubeBackend],
) -> None:
    from pytest_canary import manifests
    from pytest_canary.backends.kube.plan import Dataplane
    from pytest_canary.spec import build_spec

    env = make_backend().environment("test_istio_gateway_pods")
    objects = env._adapt(manifests.render(build_spec("istio", "1.0", "2.0", weight=20)))
    pods = env._gateway_pods(objects, Dataplane("istio", f"{env.namespace}/kubeapp-gateway"))()
    assert (pods.selector, pods.namespace) == ("istio=ingressgateway", None)


def test_a_shared_gateways_pods_are_listed_in_its_namespace_only(
    make_backend: Callable[..., KubeBackend],
) -> None:
    from pytest_canary import manifests
    from pytest_canary.backends.kube.plan import Dataplane
    from pytest_canary.backends.kube.signals import gateway_pods_of
    from pytest_canary.spec import build_spec

    env = make_backend().environment("test_shared_gateway_pods")
    objects = env._adapt(manifests.render(build_spec("istio", "1.0", "2.0", weight=20)))
    pods_of = gateway_pods_of(
        objects,
        Dataplane("istio", f"{env.namespace}/kubeapp-gateway"),
        {"istio": "ingressgateway"},
        "istio-system/istio-ingressgateway",
    )
    assert pods_of is not None
    pods = pods_of()
    assert (pods.selector, pods.namespace) == ("istio=ingressgateway", "istio-system")
