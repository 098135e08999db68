"""The ``rollouts`` handle through the plugin: a wrong expectation at any step fails with the
usual table and the report carries the controller's status and events; an expectation that
spans a step change fails saying so."""

from __future__ import annotations

import pytest

TESTS = """
import threading

STEPS = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]

def test_wrong_at_step_3(canary):
    rel = canary.deploy("rollouts", stable="1.0", canary="2.0", steps=STEPS, traffic="nginx")
    rel.promote()
    rel.expect_split(0.80)

def test_moves_while_sampling(canary):
    rel = canary.deploy("rollouts", stable="1.0", canary="2.0", steps=STEPS, traffic="nginx")
    # Someone else (a CD pipeline) promotes while the test samples: a tolerance of 0.01
    # needs ~30,000 requests, so the promotion lands in the middle.
    promote = threading.Timer(0.5, canary.environment.rollout_command, ("kubeapp", "promote"))
    promote.start()
    try:
        rel.expect_split(0.20, tolerance=0.01)
    finally:
        promote.cancel()
"""


def test_failures_at_a_step_show_the_table_the_rollout_and_a_split_that_moved(
    pytester: pytest.Pytester,
) -> None:
    """A wrong expectation at step 3 fails with the usual table and the report carries the
    controller's status and events; a promotion landing while expect_split samples moves the
    weight to 50: no verdict can be drawn from requests that saw two splits."""
    pytester.makepyfile(TESTS)
    result = pytester.runpytest("--canary-seed=1")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*canary split expectation FAIL: share of '2.0' is outside [[]0.750, 0.850[]]*",
            "*version*expected*band*observed*interval*count*",
            "*2.0*0.800*[[]0.750, 0.850[]]*",
            "*--- Rollout kubeapp (Argo Rollouts controller model) ---*",
            "*status: phase Paused (CanaryPauseStep), step 3/4, canary weight 50*",
            "*RolloutStepCompleted: Rollout step 3/4 completed (setWeight: 50)*",
        ]
    )
    result.stdout.fnmatch_lines(["*RolloutMoved: Rollout kubeapp changed while sampling*"])
