"""The README's ClusterRole lists every permission the kube backend uses: a release's whole
life runs against the API emulator, and each request it made must be allowed by that role."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from conftest import ApiServer, Call
from pytest_canary import manifests
from pytest_canary.backends.kube import KubeBackend
from pytest_canary.backends.kube.sweep import sweep_namespaces
from pytest_canary.harness import Harness
from pytest_canary.spec import build_spec

README = Path(__file__).resolve().parents[3] / "README.md"
NON_RESOURCE = {"/version", "/api", "/apis"}  # system:public-info-viewer, system:discovery


def readme_rules() -> list[dict[str, Any]]:
    for block in re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S):
        for doc in yaml.safe_load_all(block):
            if isinstance(doc, dict) and doc.get("kind") == "ClusterRole":
                return list(doc["rules"])
    raise AssertionError("README has no ClusterRole")


def permission(call: Call) -> tuple[str, str, str] | None:
    """(API group, resource[/subresource], verb) RBAC checks for a request (None: a
    non-resource or discovery URL)."""
    path = call.path.rstrip("/")
    if path in NON_RESOURCE or re.fullmatch(r"/apis/[^/]+(/[^/]+)?", path):
        return None
    parts = path.split("/")[1:]
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]  # namespaced: drop namespaces/<ns>
    resource = rest[0]
    named = len(rest) >= 2
    if len(rest) == 3:
        resource = f"{resource}/{rest[2]}"
    verb = {
        "GET": "get" if named else "list",
        "PATCH": "patch",
        "DELETE": "delete",
        "POST": "create",
        "PUT": "update",
    }[call.method]
    return group, resource, verb


def allowed(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
        for rule in rules
    )


def test_every_request_of_a_release_is_allowed_by_the_readme_cluster_role(
    api_server: ApiServer, make_backend: Callable[..., KubeBackend]
) -> None:
    backend = make_backend(keep="failed")
    env = backend.environment("test_nginx_life")
    with Harness(env) as canary:
        release = canary.deploy("nginx", stable="1.0", canary="2.0", weight=20)
        release.set_weight(50)
        env.diagnostics()
        release.promote()
        env.record_failure()  # kept: its routing moves into a ConfigMap
    bluegreen = backend.environment("test_bluegreen_life")
    with Harness(bluegreen) as canary:
        canary.deploy("bluegreen", stable="1.0", canary="2.0").promote()
    mesh = backend.environment("test_istio_objects")
    mesh.apply(manifests.render(build_spec("istio", "1.0", "2.0", weight=10)))
    mesh.apply(manifests.render(build_spec("gateway", "1.0", "2.0", weight=10)))
    mesh.close()
    sweep_namespaces(backend.api, run_id="run-1")
    backend.api.server_version()
    rules = readme_rules()
    used = {p for c in api_server.calls if (p := permission(c)) is not None}
    assert {("", "namespaces", "patch"), ("apps", "deployments", "patch")} <= used
    missing = sorted(p for p in used if not allowed(rules, *p))
    assert missing == []
