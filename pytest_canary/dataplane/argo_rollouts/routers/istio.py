"""What the controller writes to Istio: VirtualService route weights and header / mirror
routes, DestinationRule subsets; :mod:`pytest_canary.dataplane.istio` then routes them.

Upstream (argoproj/argo-rollouts, tag v1.9.1), ``rollout/trafficrouting/istio/istio.go``:

- **SetWeight** patches the named routes (or the only / first unnamed one,
  ``getHttpRouteIndexesToPatch``): canary host (before the first dot, ``getHost``) or subset
  gets the weight, stable 100 - weight, other destinations are removed (``processRoutes``);
  managed routes that mirror are patched too (``generateVirtualServicePatches``).
- **UpdateHash** labels the DestinationRule's canary / stable subsets with
  ``rollouts-pod-template-hash`` and drops other subsets, annotated managed-by (delayed
  while a ReplicaSet that takes traffic is not fully available: see
  :mod:`pytest_canary.dataplane.argo_rollouts.sync.traffic`).
- **SetHeaderRoute** adds a route matching the headers to the canary; **SetMirrorRoute** a
  route with the step's matches, the weighted route's destinations and a ``mirror`` to the
  canary, first (``createMirrorRoute``); ``orderRoutes`` puts ``managedRoutes`` first in
  their order, ``RemoveManagedRoutes`` deletes them.
- **ValidateHTTPRoutes** (``validateVirtualServiceRouteDestinations``) refuses a route
  without both destinations, and more than one unnamed route when no route is named.
- A VirtualService or DestinationRule missing from the cache is the controller's
  ``not found`` error.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_canary.dataplane.argo_rollouts.api import (
    MANAGED_BY,
    MAX_WEIGHT,
    POD_TEMPLATE_HASH,
    Key,
    Manifest,
    ReconcileError,
)
from pytest_canary.dataplane.argo_rollouts.config import IstioVirtualServiceRef, RolloutConfig
from pytest_canary.rollout_spec import Step


def find_virtual_service(
    objects: Mapping[Key, Mapping[str, Any]], ref: IstioVirtualServiceRef
) -> Mapping[str, Any]:
    """The VirtualService ``ref`` names (``name`` or ``name.namespace``), from the cache.

    Raises:
        ReconcileError: it is not there.
    """
    name = ref.name.split(".", 1)[0]
    found = objects.get(("VirtualService", name))
    if found is None:
        raise ReconcileError(f'virtualservices.networking.istio.io "{name}" not found')
    return found


def find_destination_rule(objects: Mapping[Key, Mapping[str, Any]], name: str) -> Mapping[str, Any]:
    """The DestinationRule ``name``, from the cache.

    Raises:
        ReconcileError: it is not there.
    """
    found = objects.get(("DestinationRule", name))
    if found is None:
        raise ReconcileError(f'destinationrules.networking.istio.io "{name}" not found')
    return found


def _host(destination: Mapping[str, Any]) -> str:
    """istio.go ``getHost``: the host up to its first dot."""
    host = str((destination.get("destination") or {}).get("host", ""))
    return host.split(".", 1)[0]


def _route_indexes(names: Sequence[str], routes: Sequence[Mapping[str, Any]]) -> list[int]:
    """``getHttpRouteIndexesToPatch``."""
    if not names:
        if len(routes) == 1:
            return [0]
        unnamed = [i for i, r in enumerate(routes) if not r.get("name")]
        return unnamed[:1]
    indexes = []
    for name in names:
        found = next((i for i, r in enumerate(routes) if r.get("name") == name), -1)
        if found < 0:
            raise ReconcileError(
                f"HTTP Route '{name}' is not found in the defined Virtual Service."
            )
        indexes.append(found)
    return indexes


def _validate_routes(
    config: RolloutConfig, names: Sequence[str], routes: Sequence[Mapping[str, Any]]
) -> None:
    """``ValidateHTTPRoutes`` / ``validateVirtualServiceRouteDestinations``."""
    assert config.istio is not None
    istio = config.istio
    for index in _route_indexes(names, routes):
        destinations = routes[index].get("route") or []
        hosts = {_host(d) for d in destinations}
        subsets = {str((d.get("destination") or {}).get("subset", "")) for d in destinations}
        if istio.destination_rule:
            if istio.canary_subset not in subsets:
                raise ReconcileError(
                    f"Canary DestinationRule subset '{istio.canary_subset}' not found in route"
                )
            if istio.stable_subset not in subsets:
                raise ReconcileError(
                    f"Stable DestinationRule subset '{istio.stable_subset}' not found in route"
                )
        else:
            if config.canary_service not in hosts:
                raise ReconcileError(f"Canary Service '{config.canary_service}' not found in route")
            if config.stable_service not in hosts:
                raise ReconcileError(f"Stable Service '{config.stable_service}' not found in route")
    unmanaged = [r for r in routes if r.get("name") not in config.managed_routes]
    if not names and len(unmanaged) > 1:
        raise ReconcileError(
            "spec.http[] should be set in VirtualService and it must have exactly one route "
            "when omitting spec.strategy.canary.trafficRouting.istio.virtualService.routes"
        )


def _order_routes(config: RolloutConfig, routes: list[Manifest]) -> list[Manifest]:
    """``orderRoutes``: managed routes first, in managedRoutes order, then the others."""
    if not config.managed_routes:
        return routes
    managed = [r for name in config.managed_routes for r in routes if r.get("name") == name]
    return managed + [r for r in routes if r.get("name") not in config.managed_routes]


def _without_route(vs: Mapping[str, Any], name: str) -> tuple[Manifest, list[Manifest]]:
    """A copy of the VirtualService and its HTTP routes but the one named ``name``."""
    out = copy.deepcopy(dict(vs))
    routes = [r for r in (out.get("spec") or {}).get("http") or [] if r.get("name") != name]
    return out, routes


def _with_routes(config: RolloutConfig, out: Manifest, routes: list[Manifest]) -> Manifest:
    """``out`` with ``routes`` as its HTTP routes, managed ones first (``orderRoutes``)."""
    out.setdefault("spec", {})["http"] = _order_routes(config, routes)
    return out


def _weighted_route(ref: IstioVirtualServiceRef, routes: list[Manifest]) -> Manifest | None:
    """The first route ``SetWeight`` patches, if any."""
    weighted = _route_indexes(list(ref.routes), routes)
    return routes[weighted[0]] if weighted else None


def _canary_destination(
    config: RolloutConfig, destination_rule_host: str | None, port: object = None
) -> Manifest:
    """Where a header or mirror route sends: the canary Service, or the DestinationRule's
    host with the canary subset."""
    assert config.istio is not None
    destination: Manifest = {"host": destination_rule_host or config.canary_service}
    if port:
        destination["port"] = {"number": port}
    if config.istio.canary_subset:
        destination["subset"] = config.istio.canary_subset
    return destination


def virtual_service_with_weight(
    config: RolloutConfig, vs: Mapping[str, Any], ref: IstioVirtualServiceRef, weight: int
) -> Manifest:
    """``SetWeight`` on one VirtualService: canary = weight, stable = 100 - weight, other
    destinations of the patched routes removed (``processRoutes``).

    Raises:
        ReconcileError: a named route is missing or lacks the canary or stable destination.
    """
    assert config.istio is not None
    out = copy.deepcopy(dict(vs))
    routes: list[Manifest] = list((out.get("spec") or {}).get("http") or [])
    names = list(ref.routes)
    # Managed routes that mirror are patched too (generateVirtualServicePatches).
    names += [
        r["name"] for r in routes if r.get("mirror") and r.get("name") in config.managed_routes
    ]
    _validate_routes(config, list(ref.routes), routes)
    istio = config.istio
    for index in _route_indexes(names, routes):
        kept = []
        for destination in routes[index].get("route") or []:
            host = _host(destination)
            subset = str((destination.get("destination") or {}).get("subset", ""))
            if host and (
                host == config.canary_service or (subset and subset == istio.canary_subset)
            ):
                kept.append({**destination, "weight": weight})
            elif host and (
                host == config.stable_service or (subset and subset == istio.stable_subset)
            ):
                kept.append({**destination, "weight": MAX_WEIGHT - weight})
            elif not host:
                kept.append(destination)
        routes[index] = {**routes[index], "route": kept}
    return _with_routes(config, out, routes)


def virtual_service_with_header_route(
    config: RolloutConfig,
    vs: Mapping[str, Any],
    ref: IstioVirtualServiceRef,
    step: Step,
    destination_rule_host: str | None,
) -> Manifest:
    """``SetHeaderRoute``: the route named by the step is replaced by one matching its
    headers and sending 100% to the canary (host = the canary Service, or the
    DestinationRule's host with the canary subset); no match removes it."""
    assert config.istio is not None
    out, routes = _without_route(vs, step.route)
    if step.matches:
        weighted = _weighted_route(ref, routes)
        first = ((weighted.get("route") or [{}])[0].get("destination") or {}) if weighted else {}
        port = (first.get("port") or {}).get("number")
        routes.append(
            {
                "name": step.route,
                "match": [{"headers": {m.header: {m.kind: m.value}}} for m in step.matches],
                "route": [
                    {
                        "destination": _canary_destination(config, destination_rule_host, port),
                        "weight": 100,
                    }
                ],
            }
        )
    return _with_routes(config, out, routes)


def virtual_service_with_mirror_route(
    config: RolloutConfig,
    vs: Mapping[str, Any],
    ref: IstioVirtualServiceRef,
    step: Step,
    destination_rule_host: str | None,
) -> Manifest:
    """``SetMirrorRoute``: a route with the step's matches, the weighted route's current
    destinations and a ``mirror`` to the canary, first (``createMirrorRoute``)."""
    assert config.istio is not None
    out, routes = _without_route(vs, step.route)
    body = step.raw.get("setMirrorRoute") or {}
    if body.get("match"):
        weighted = _weighted_route(ref, routes)
        destinations = copy.deepcopy(weighted.get("route") or []) if weighted else []
        matches = []
        for match in body["match"]:
            block: Manifest = {}
            for ours, theirs in (("method", "method"), ("path", "uri"), ("headers", "headers")):
                if match.get(ours):
                    block[theirs] = copy.deepcopy(match[ours])
            matches.append(block)
        percent = body.get("percentage")
        routes.insert(
            0,
            {
                "name": step.route,
                "match": matches,
                "route": destinations,
                "mirror": _canary_destination(config, destination_rule_host),
                "mirrorPercentage": {"value": float(100 if percent is None else percent)},
            },
        )
    return _with_routes(config, out, routes)


def virtual_service_without_managed_routes(
    config: RolloutConfig, vs: Mapping[str, Any]
) -> Manifest:
    """``RemoveManagedRoutes``."""
    out = copy.deepcopy(dict(vs))
    spec = out.setdefault("spec", {})
    spec["http"] = [r for r in spec.get("http") or [] if r.get("name") not in config.managed_routes]
    return out


def destination_rule_with_hashes(
    config: RolloutConfig, dr: Mapping[str, Any], canary_hash: str, stable_hash: str
) -> Manifest:
    """``UpdateHash``: canary / stable subsets labelled with their ReplicaSet's hash; other
    subsets are dropped; annotated managed-by."""
    assert config.istio is not None
    out = copy.deepcopy(dict(dr))
    out.setdefault("metadata", {}).setdefault("annotations", {})[MANAGED_BY] = config.name
    subsets = []
    for subset in (out.get("spec") or {}).get("subsets") or []:
        labels = dict(subset.get("labels") or {})
        if subset.get("name") == config.istio.canary_subset:
            value = canary_hash
        elif subset.get("name") == config.istio.stable_subset:
            value = stable_hash
        else:
            continue
        if value:
            labels[POD_TEMPLATE_HASH] = value
        else:
            labels.pop(POD_TEMPLATE_HASH, None)
        subsets.append({**subset, "labels": labels})
    out.setdefault("spec", {})["subsets"] = subsets
    return out
