"""Argo Rollouts canary strategies as the controller reads and validates them (v1.9.1
types.go / validation.go), and the ``rollouts`` strategy's knobs: each refusal names the
field and cites the upstream rule."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_canary import CanaryConfigError, build_spec
from pytest_canary.rollout_spec import (
    canary_problems,
    duration_seconds,
    go_duration_seconds,
    parse_steps,
    unmodelled,
)

HEADER_ROUTE = {
    "setHeaderRoute": {
        "name": "hdr",
        "match": [{"headerName": "x-canary", "headerValue": {"exact": "yes"}}],
    }
}


def messages(canary: dict[str, Any]) -> list[str]:
    return [p.message for p in canary_problems(canary)]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30),
        ("30", 30),
        ("30s", 30),
        ("1m30s", 90),
        ("1h", 3600),
        ("1.9s", 1),
        ("500ms", 0),
        ("0", 0),
    ],
)
def test_pause_duration_is_seconds_or_a_go_duration_truncated(value: object, seconds: int) -> None:
    """types.go ``RolloutPause.DurationSeconds``: int seconds, digit string, or
    time.ParseDuration truncated to whole seconds."""
    assert duration_seconds(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5 minutes", "1d", "", "s", ".s", True, 1.5, None])
def test_an_invalid_pause_duration_is_minus_one(value: object) -> None:
    """DurationSeconds returns -1 for what neither ParseInt nor ParseDuration reads."""
    assert duration_seconds(value) == -1


def test_go_duration_accepts_go_units_and_signs() -> None:
    assert go_duration_seconds("1h2m3.5s") == 3723.5
    assert go_duration_seconds("-1m") == -60.0
    assert go_duration_seconds("2us") == pytest.approx(2e-6)
    assert go_duration_seconds("10") is None  # Go requires a unit except for "0"


def test_set_weight_must_be_between_0_and_100() -> None:
    """validation.go InvalidSetWeightMessage."""
    assert messages({"steps": [{"setWeight": 101}]}) == ["SetWeight needs to be between 0 and 100"]
    assert messages({"steps": [{"setWeight": -1}]}) == ["SetWeight needs to be between 0 and 100"]
    assert messages({"steps": [{"setWeight": 0}, {"setWeight": 100}]}) == []


def test_pause_duration_must_not_be_negative_or_unreadable() -> None:
    """validation.go InvalidDurationMessage (DurationSeconds() < 0)."""
    for duration in (-5, "soon", "-1s"):
        (problem,) = canary_problems({"steps": [{"pause": {"duration": duration}}]})
        assert problem.path == "spec.strategy.canary.steps[0].pause.duration"
        assert "InvalidDurationMessage" in problem.rule


def test_a_step_has_exactly_one_type() -> None:
    """validation.go InvalidStepMessage / hasMultipleStepsType."""
    for step in ({}, {"setWeight": 10, "pause": {}}):
        assert any("Step must have one of" in m for m in messages({"steps": [step]}))


def test_unknown_step_fields_are_refused_as_the_structural_crd_does() -> None:
    (problem,) = [
        p for p in canary_problems({"steps": [{"setWieght": 10}]}) if "unknown" in p.message
    ]
    assert "setWieght" in problem.message and "rollout-crd.yaml" in problem.rule


def test_set_canary_scale_needs_traffic_routing() -> None:
    """validation.go InvalidSetCanaryScaleTrafficPolicy."""
    assert messages({"steps": [{"setCanaryScale": {"replicas": 2}}]}) == [
        "SetCanaryScale requires TrafficRouting to be set (steps[0])"
    ]


def test_set_header_route_needs_istio_not_nginx() -> None:
    """validation.go InvalidSetHeaderRouteTrafficPolicy: Istio, ALB, Apisix or plugins."""
    nginx = {
        "steps": [HEADER_ROUTE],
        "canaryService": "c",
        "stableService": "s",
        "trafficRouting": {"nginx": {"stableIngress": "x"}, "managedRoutes": [{"name": "hdr"}]},
    }
    assert any(m.startswith("SetHeaderRoute requires TrafficRouting") for m in messages(nginx))
    istio = {
        "steps": [HEADER_ROUTE],
        "trafficRouting": {
            "istio": {"virtualService": {"name": "v"}, "destinationRule": {"name": "d"}},
            "managedRoutes": [{"name": "hdr"}],
        },
    }
    assert messages(istio) == []


def test_set_mirror_route_needs_istio() -> None:
    """validation.go: "SetMirrorRoute requires TrafficRouting, supports Istio only"."""
    canary = {"steps": [{"setMirrorRoute": {"name": "m"}}]}
    assert messages(canary) == ["SetMirrorRoute requires TrafficRouting, supports Istio only"]


def test_header_and_mirror_routes_need_managed_routes_naming_them() -> None:
    """validation.go MissingFieldMessage and InvalideStepRouteNameNotFoundInManagedRoutes."""
    routing: dict[str, Any] = {
        "istio": {"virtualService": {"name": "v"}, "destinationRule": {"name": "d"}}
    }
    missing = messages({"steps": [HEADER_ROUTE], "trafficRouting": routing})
    assert any("managedRoutes" in m and "missing" in m for m in missing)
    routing["managedRoutes"] = [{"name": "other"}]
    wrong = messages({"steps": [HEADER_ROUTE], "trafficRouting": routing})
    assert any(
        "does not exist in spec.strategy.canary.trafficRouting.managedRoutes" in m for m in wrong
    )


def test_header_match_needs_exactly_one_of_exact_regex_prefix() -> None:
    """validation.go hasMultipleMatchValues."""
    _, problems = parse_steps(
        [
            {
                "setHeaderRoute": {
                    "name": "h",
                    "match": [{"headerName": "a", "headerValue": {"exact": "x", "prefix": "y"}}],
                }
            }
        ]
    )
    assert [p.message for p in problems] == [
        "StringMatch match value must have exactly one of the following: exact, regex, prefix"
    ]
    _, problems = parse_steps(
        [{"setHeaderRoute": {"name": "h", "match": [{"headerName": "a", "headerValue": {}}]}}]
    )
    assert problems[0].message.startswith("StringMatch value missed")


def test_max_surge_and_max_unavailable_cannot_both_be_zero() -> None:
    """validation.go InvalidMaxSurgeMaxUnavailable (defaults 25% each)."""
    assert messages({"maxSurge": 0, "maxUnavailable": "0%"}) == [
        "MaxSurge and MaxUnavailable both can not be zero"
    ]
    assert messages({"maxSurge": 0}) == []


def test_nginx_and_istio_host_splitting_need_both_services_and_different_ones() -> None:
    """validation.go requireCanaryStableServices / InvalidTrafficRoutingMessage and
    DuplicatedServicesCanaryMessage; Istio with a DestinationRule needs none."""
    nginx = {"trafficRouting": {"nginx": {"stableIngress": "x"}}, "canaryService": "svc"}
    assert messages(nginx) == [
        "Canary service and Stable service must to be set to use Traffic Routing"
    ]
    same = {**nginx, "stableService": "svc"}
    assert any("same service for the stable and canary" in m for m in messages(same))
    subset = {
        "trafficRouting": {
            "istio": {"virtualService": {"name": "v"}, "destinationRule": {"name": "d"}}
        }
    }
    assert messages(subset) == []


def test_scale_down_delay_and_dynamic_stable_scale_need_traffic_routing() -> None:
    """validation.go InvalidCanaryScaleDownDelay / InvalidCanaryDynamicStableScale."""
    assert messages({"scaleDownDelaySeconds": 5}) == [
        "Canary scaleDownDelaySeconds can only be used with traffic routing"
    ]
    assert messages({"dynamicStableScale": True}) == [
        "Canary dynamicStableScale can only be used with traffic routing"
    ]


def test_analysis_and_experiment_steps_are_not_modelled() -> None:
    """They need an AnalysisTemplate and a metrics provider the harness does not have."""
    found = unmodelled(
        {"steps": [{"analysis": {"templates": [{"templateName": "x"}]}}, {"experiment": {}}]}
    )
    assert [p.path for p in found] == [
        "spec.strategy.canary.steps[0].analysis",
        "spec.strategy.canary.steps[1].experiment",
    ]
    assert "metrics provider" in found[0].message


# -- the strategy's knobs ----------------------------------------------------------------------

SEED = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "5s"}}]


def test_the_issue_example_builds() -> None:
    spec = build_spec("rollouts", "1.0", "2.0", steps=SEED, traffic="nginx")
    assert spec.traffic == "nginx" and spec.steps == tuple(SEED) and spec.replicas == 1


@pytest.mark.parametrize(
    ("knobs", "fragment"),
    [
        ({"traffic": "nginx", "steps": [HEADER_ROUTE]}, "steps[0].setHeaderRoute="),
        ({"traffic": "nginx", "steps": [{"setMirrorRoute": {"name": "m"}}]}, "supports Istio only"),
        ({"steps": [{"analysis": {"templates": []}}]}, "metrics provider"),
        ({"steps": [{"experiment": {"templates": []}}]}, "steps[0].experiment="),
        ({"steps": [{"pause": {"duration": "5 minutes"}}]}, "steps[0].pause.duration='5 minutes'"),
        (
            {"steps": [{"setWeight": 150}]},
            "steps[0].setWeight=150: SetWeight needs to be between 0 and 100",
        ),
        (
            {"steps": [], "max_surge": 0, "max_unavailable": 0},
            "max_surge=0: MaxSurge and MaxUnavailable",
        ),
        (
            {"steps": [{"setCanaryScale": {"replicas": 1}}]},
            "SetCanaryScale requires TrafficRouting",
        ),
        (
            {"traffic": "istio", "steps": [HEADER_ROUTE]},
            "managed_routes=None: Rollout has missing field",
        ),
        (
            {"traffic": "istio", "steps": [HEADER_ROUTE], "managed_routes": ["x"]},
            "does not exist in",
        ),
    ],
)
def test_what_argo_refuses_is_a_config_error_citing_validation_go(
    knobs: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(CanaryConfigError) as caught:
        build_spec("rollouts", "1.0", "2.0", **knobs)
    assert fragment in str(caught.value)
    if "metrics provider" not in fragment and "experiment" not in fragment:
        assert "argo-rollouts v1.9.1" in str(caught.value)


@pytest.mark.parametrize(
    ("knobs", "fragment"),
    [
        ({"traffic": "linkerd"}, "traffic='linkerd': must be 'nginx'"),
        ({"steps": "setWeight: 20"}, "steps='setWeight: 20'"),
        (
            {"scale_down_delay": 5},
            "scale_down_delay=5: scaleDownDelaySeconds needs traffic routing",
        ),
        (
            {"traffic": "nginx", "scale_down_delay": 0},
            "scale_down_delay=0: must be an integer from 1",
        ),
        ({"traffic": "istio", "additional_ingress_annotations": {}}, "needs traffic='nginx'"),
        (
            {"traffic": "nginx", "additional_ingress_annotations": {"canary-weight": "30"}},
            "always overwrites",
        ),
        (
            {
                "traffic": "nginx",
                "additional_ingress_annotations": {"canary-by-header": "X Canary"},
            },
            "ingress-nginx accepts only",
        ),
        ({"traffic": "nginx", "managed_routes": ["a"]}, "needs traffic='istio'"),
        ({"traffic": "istio", "istio_split": "mesh"}, "istio_split='mesh'"),
        (
            {"steps": [{"setWeight": 20}, {"pause": {"duration": "99999h"}}]},
            "steps[1].pause.duration='99999h': is 359996400 s; a timed pause must be 0 to 3600 s",
        ),
        ({"weight": 20}, "steps=[{'setWeight': 20}]"),
        ({"max_surge": "120%"}, "max_surge='120%'"),
        ({"steps": None}, "steps=None: must be a list of steps"),
        # Argo scales the canary to setCanaryScale whatever spec.replicas: bounded like
        # replicas, so a step cannot start a thousand pods.
        (
            {"traffic": "nginx", "steps": [{"setCanaryScale": {"replicas": 1_000_000_000}}]},
            "scales the canary to 1000000000 pods; setCanaryScale may ask for at most 50",
        ),
        (
            {"traffic": "nginx", "replicas": 10, "steps": [{"setCanaryScale": {"weight": 1000}}]},
            "scales the canary to 100 pods",
        ),
    ],
)
def test_knobs_are_validated_naming_the_field(knobs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(CanaryConfigError) as caught:
        build_spec("rollouts", "1.0", "2.0", **knobs)
    assert fragment in str(caught.value)
