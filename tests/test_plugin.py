"""The plugin as a user meets it: options, header, fixtures, failure output, reports, cleanup.

Runs are in-process (``runpytest``) unless signals, the environment of a fresh interpreter or
concurrency matter; tests that ask the same question of one run share that run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

NGINX_TEST = """
def test_weighted(canary):
    rel = canary.deploy(strategy="nginx", stable="1.0", canary="2.0", weight={weight})
    rel.expect_split({share})
"""


def _block(lines: list[str], title: str) -> list[str]:
    """The lines of one failure's report: from its ``____ title ____`` line to the next
    heading."""
    start = next(i for i, line in enumerate(lines) if line.strip("_ ") == title)
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith(("____", "===="))),
        len(lines),
    )
    return lines[start:end]


def _summary(lines: list[str]) -> list[str]:
    start = next(i for i, line in enumerate(lines) if "canary verdicts" in line)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("===="))
    return lines[start + 1 : end]


def test_header_names_backend_models_seed_and_alpha(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--canary-seed=42")
    result.stdout.fnmatch_lines(
        [
            "canary: local backend modelling ingress-nginx controller-v1.15.1 canary rules*",
            "canary: --canary-seed=42 alpha=0.001 tolerance=0.05",
        ]
    )


def test_help_shows_the_choices_and_the_setup_timeout(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "*--canary-backend={local,kind,kube}*",
            "*--canary-runtime={process,docker}*",
            "*--canary-seed=N|last*",
            "*--canary-setup-timeout=SECONDS*",
        ]
    )


#: The README's first example (tests/test_readme.py checks that it still is this test).
ISSUE_EXAMPLE = """
def test_weighted_canary(canary):
    rel = canary.deploy(strategy="nginx", stable="1.0", canary="2.0", weight=20)
    rel.expect_split(0.20)
    rel.expect_routed("2.0", headers={"X-Canary": "always"})
    rel.expect_routed("1.0", headers={"X-Canary": "never"})
    rel.set_weight(50)
    rel.expect_split(0.50)
    rel.promote()
    rel.expect_routed("2.0")
"""


def test_issue_example_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(ISSUE_EXAMPLE)
    result = pytester.runpytest("--canary-seed=1")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*canary verdicts*",
            "  result*strategy*check*expected*observed*n*errors*time",
            "test_issue_example_passes.py::test_weighted_canary",
            "  PASS*nginx*split*2.0=0.20 1.0=0.80*",
            "  PASS*nginx*routed (X-Canary: always)*2.0=1.00*2.0=1.000*",
        ]
    )


def test_a_health_verdict_writes_only_fields_that_apply_to_junit(pytester: pytest.Pytester) -> None:
    """A health verdict has no tolerance and no expected shares: JUnit carried
    ``tolerance="None"`` and ``expected="none"``; now it leaves the one out and writes the
    limits as the other, as the summary does."""
    pytester.makepyfile(
        """
        def test_health(canary):
            rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50,
                                canary_error_rate=1.0)
            rel.expect_healthy()
        """
    )
    result = pytester.runpytest("--junitxml=junit.xml")
    result.assert_outcomes(failed=1)
    (case,) = ElementTree.parse(pytester.path / "junit.xml").iter("testcase")
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert properties["canary.1"].startswith("canary health expectation FAIL")
    assert properties["canary.1.expected"] == "err<=+0.01 p95<=x1.2"
    assert properties["canary.1.limits[max_latency_increase]"] == "0.2"
    assert "canary.1.tolerance" not in properties
    assert not [name for name, value in properties.items() if value in ("None", "none")]


def test_a_failing_split_reports_table_evidence_junit_and_artifacts(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(NGINX_TEST.format(weight=30, share=0.60))
    result = pytester.runpytest(
        "--canary-seed=1",
        "--canary-report=report.json",
        "--junitxml=junit.xml",
        "--canary-artifacts=evidence",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*canary split expectation FAIL: share of '2.0' is outside [[]0.550, 0.650[]]*",
            "*version*expected*band*observed*interval*count*",
            "*2.0*0.600*[[]0.550, 0.650[]]*",
            "*n=* classified, errors=0 (none), alpha=0.001, tolerance=0.05*",
            "*canary diagnostics*",
            "--- pods ---",
            "*kubeapp-canary-*Ready Running*",
            "--- router access log (last 25) ---",
            # Repeated log lines are counted once: the decisions the router made, at a glance.
            "*x foo.bar / -> [[]kubeapp-*:80[]] *(weight 30/100 drew the *)",
            "--- manifests of kubeapp (canary): routing objects ---",
            "*nginx.ingress.kubernetes.io/canary-weight: '30'*",
            "(not shown: Deployment/kubeapp-stable, Service/kubeapp-stable, "
            "Deployment/kubeapp-canary, Service/kubeapp-canary)",
            "(every section in full: *evidence*)",
        ]
    )
    failure = _block(result.stdout.lines, "test_weighted")
    # Table first, evidence short: about 225 lines per failure before the manifests moved out.
    assert len(failure) <= 90, "\n".join(failure)
    assert not [line for line in failure if "pytest_canary/" in line]  # plugin frames hidden

    (verdict,) = json.loads((pytester.path / "report.json").read_text())["verdicts"]
    assert verdict["decision"] == "FAIL"
    # A gross error is decided long before the fixed design's ~2,600 requests.
    assert verdict["requests"] < 400, verdict["requests"]

    (case,) = ElementTree.parse(pytester.path / "junit.xml").iter("testcase")
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert properties["canary.1"].startswith("canary split expectation FAIL: share of '2.0'")
    assert properties["canary.1.kind"] == "split"
    assert properties["canary.1.decision"] == "FAIL"
    assert properties["canary.1.expected[2.0]"] == "0.6"
    assert properties["canary.1.n"] == str(verdict["n"])
    assert properties["canary.1.errors"] == "none"
    assert properties["canary.1.alpha"] == "0.001"
    assert properties["canary.1.tolerance"] == "0.05"
    low, high = verdict["intervals"]["2.0"]
    assert properties["canary.1.intervals[2.0]"] == f"[{low:.6g}, {high:.6g}]"
    assert properties["canary.1.observed[2.0]"] == f"{verdict['observed']['2.0']:.6g}"
    # The health verdict's fields (roles, checks, limits, ...) are no part of a split.
    assert not [name for name in properties if name.startswith("canary.1.roles")]
    assert "canary.1.unattributed_errors" not in properties

    (folder,) = (pytester.path / "evidence").iterdir()
    manifests = next(p for p in folder.iterdir() if "manifests" in p.name).read_text()
    assert "kind: Deployment" in manifests and "kind: Ingress" in manifests


def test_configuration_errors_and_routing_failures_read_short(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_bad_weight(canary):
            canary.deploy("nginx", stable="1.0", canary="2.0", weight=150)

        def test_header(canary):
            rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=20)
            rel.expect_routed("2.0", headers={"X-Canry": "always"})
        """
    )
    result = pytester.runpytest("--canary-seed=3")
    result.assert_outcomes(failed=2)
    bad_weight = _block(result.stdout.lines, "test_bad_weight")
    text = "\n".join(bad_weight)
    # The test's line, then the error: no frames of the plugin, no empty diagnostics heading.
    assert '>       canary.deploy("nginx", stable="1.0", canary="2.0", weight=150)' in text
    assert "E       pytest_canary.errors.CanaryConfigError: weight=150: must be an integer" in text
    assert "pytest_canary/" not in text and "canary diagnostics" not in text
    assert len(bad_weight) <= 10, text
    result.stdout.fnmatch_lines(
        ["*routed expectation FAIL for X-Canry: always*responses from 1.0*"]
    )


def test_expected_failures_show_as_expected_and_the_summary_fits_120_columns(
    pytester: pytest.Pytester,
) -> None:
    long_name = "test_" + "a_wrong_split_that_the_test_catches_on_purpose_" * 3
    header = "X-A-Rather-Long-Canary-Header-Name-For-Testing"
    pytester.makepyfile(
        f"""
        import pytest

        def {long_name}(canary):
            rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=30, header="{header}")
            with pytest.raises(AssertionError):
                rel.expect_split(0.9, headers={{"{header}": "a-value-that-routes-by-weight"}})

        @pytest.mark.xfail(reason="known bad", strict=True)
        def test_known_bad(canary):
            canary.deploy("nginx", stable="1.0", canary="2.0", weight=30).expect_split(0.9)

        def test_right(canary):
            canary.deploy("nginx", stable="1.0", canary="2.0", weight=30).expect_split(0.3)
        """
    )
    result = pytester.runpytest("--canary-seed=6")
    result.assert_outcomes(passed=2, xfailed=1)
    summary = _summary(result.stdout.lines)
    assert max(len(line) for line in summary) <= 120, "\n".join(summary)
    assert [line.split("  ")[1] for line in summary if line.startswith("  ")] == [
        "result",
        "FAIL (expected)",
        "FAIL (expected)",
        "PASS",
    ]
    elided = next(line for line in summary if line.startswith("test_expected_failures"))
    assert "\u2026" in elided and elided.endswith("on_purpose_")
    # The long check is elided in its middle, keeping the start and the end.
    result.stdout.fnmatch_lines(["  FAIL (expected)  nginx     split (X-*…*-routes-by-weight)  *"])


def test_marker_beats_cli_beats_env_beats_ini(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\ncanary_alpha = 0.2\ncanary_tolerance = 0.1\ncanary_leak = 0.3\n")
    monkeypatch.setenv("PYTEST_CANARY_TOLERANCE", "0.15")
    pytester.makepyfile(
        """
        import pytest

        def test_plain(canary_settings):
            s = canary_settings
            assert (s.alpha, s.tolerance, s.leak) == (0.2, 0.15, 0.25)

        @pytest.mark.canary(leak=0.4)
        def test_marked(canary_settings):
            assert canary_settings.leak == 0.4
        """
    )
    result = pytester.runpytest("--canary-leak=0.25")
    result.assert_outcomes(passed=2)


def test_session_options_resolve_like_every_setting(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\ncanary_runtime = docker\ncanary_seed = 7\n")
    pytester.makepyfile("def test_x(): pass")
    monkeypatch.setenv("PYTEST_CANARY_RUNTIME", "process")  # env beats ini
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["*pods as processes*(--canary-runtime=process)", "*seed=7 *"])
    monkeypatch.setenv("PYTEST_CANARY_RUNTIME", "podman")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*runtime 'podman' from environment PYTEST_CANARY_RUNTIME: must be one of process, docker"]
    )
    monkeypatch.delenv("PYTEST_CANARY_RUNTIME")
    monkeypatch.setenv("PYTEST_CANARY_ANY_KUBERNETES_VERSION", "maybe")  # a switch
    result = pytester.runpytest()
    result.stderr.fnmatch_lines(
        [
            "*any_kubernetes_version 'maybe' from environment "
            "PYTEST_CANARY_ANY_KUBERNETES_VERSION: must be one of y, yes, t, true, on, 1, n, *"
        ]
    )


def test_bad_ini_value_says_where_it_came_from(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncanary_alpha = 1.5\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*alpha '1.5' from ini canary_alpha: must be in (0, 0.5)*"])


def test_unknown_marker_setting_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.canary(alfa=0.1)
        def test_x(canary):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.canary(alfa=...): unknown setting*"])


def test_bad_backend_and_seed_are_usage_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--canary-backend=minikube")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*backend 'minikube' from command line --canary-backend: must be one of local, kind, kube"]
    )
    result = pytester.runpytest("--canary-seed=abc")
    result.stderr.fnmatch_lines(
        ["*seed 'abc' from command line --canary-seed: must be an integer or 'last'"]
    )


COUNTING_TEST = """
import os

def test_counts(canary):
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=30)
    with open(os.environ.get("RUN_NAME", "run") + ".counts", "a") as f:
        f.write(str(rel.sample(100).counts["2.0"]) + chr(10))
"""


def test_seed_last_repeats_the_previous_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(COUNTING_TEST)
    first = pytester.runpytest()
    second = pytester.runpytest("--canary-seed=last")
    counts = (pytester.path / "run.counts").read_text().split()
    assert len(counts) == 2 and counts[0] == counts[1]
    seed_line = next(line for line in first.stdout.lines if "--canary-seed=" in line)
    seed = seed_line.split("--canary-seed=")[1].split()[0]
    second.stdout.fnmatch_lines([f"*--canary-seed={seed} *(--canary-seed=last: the passed run of*"])


def test_seed_last_is_the_failed_run_of_two_concurrent_ones(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs in one folder at once: the failing one (seed 111) ends first, the passing one
    (seed 222) last; both started before either ended. ``last`` is the failing run."""
    pytester.makepyfile(
        COUNTING_TEST
        + """
    if os.environ.get("RUN_NAME") == "passing":  # end after the failing run
        import pathlib, time
        deadline = time.monotonic() + 60
        while not pathlib.Path("failing.done").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert os.environ.get("RUN_NAME") != "failing"
"""
    )
    runs = {}
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # a faster start: ours only
    for name, seed in (("failing", 111), ("passing", 222)):
        monkeypatch.setenv("RUN_NAME", name)
        runs[name] = pytester.popen(
            [sys.executable, "-m", "pytest", "-p", "pytest_canary.plugin", f"--canary-seed={seed}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    assert runs["failing"].wait(120) == 1
    (pytester.path / "failing.done").touch()
    assert runs["passing"].wait(120) == 0
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("RUN_NAME", "again")
    result = pytester.runpytest("--canary-seed=last")
    result.stdout.fnmatch_lines(["*--canary-seed=111 *(--canary-seed=last: the failed run of*"])
    assert (pytester.path / "again.counts").read_text() == (
        pytester.path / "failing.counts"
    ).read_text()


PID_RECORDING_TEST = """
import os, signal

def test_{name}(canary):
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50, replicas=2)
    pids = [pod.stopper.process.pid for pod in canary.environment.pods]
    ports = [pod.port for pod in canary.environment.pods] + [int(rel.url.rsplit(":", 1)[1])]
    with open("pids-{name}.txt", "w") as f:
        f.write(" ".join(map(str, pids)) + "\\n" + " ".join(map(str, ports)))
    {action}
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _assert_stopped(folder: Path, name: str) -> None:
    pids_line, ports_line = (folder / f"pids-{name}.txt").read_text().splitlines()
    pids = [int(p) for p in pids_line.split()]
    ports = [int(p) for p in ports_line.split()]
    assert len(pids) == 4
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)], name
    assert all(_port_free(p) for p in ports), name


def test_nothing_is_left_running_after_a_test(pytester: pytest.Pytester) -> None:
    actions = {
        "passed": "rel.expect_split(0.5)",
        "failed": "rel.expect_split(0.9)",
        "error": "raise RuntimeError('boom')",
    }
    pytester.makepyfile(
        "\n".join(PID_RECORDING_TEST.format(name=n, action=a) for n, a in actions.items())
    )
    result = pytester.runpytest_subprocess("--canary-seed=5", timeout=120)
    result.assert_outcomes(passed=1, failed=2)
    for name in actions:
        _assert_stopped(pytester.path, name)


def test_nothing_is_left_running_after_ctrl_c(pytester: pytest.Pytester) -> None:
    action = "os.kill(os.getpid(), signal.SIGINT)"
    pytester.makepyfile(PID_RECORDING_TEST.format(name="interrupted", action=action))
    pytester.runpytest_subprocess("--canary-seed=5", timeout=120)
    _assert_stopped(pytester.path, "interrupted")


def test_pods_die_with_a_killed_pytest(pytester: pytest.Pytester) -> None:
    action = "os.kill(os.getpid(), signal.SIGKILL)"
    pytester.makepyfile(PID_RECORDING_TEST.format(name="killed", action=action))
    pytester.runpytest_subprocess("--canary-seed=5", timeout=120)
    pids = [int(p) for p in (pytester.path / "pids-killed.txt").read_text().split("\n")[0].split()]
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)]


def test_plots_one_png_per_split(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(NGINX_TEST.format(weight=20, share=0.20))
    result = pytester.runpytest("--canary-seed=2", "--canary-plots=plots")
    result.assert_outcomes(passed=1)
    (png,) = (pytester.path / "plots").iterdir()
    assert png.name.endswith("-split.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_without_matplotlib_is_a_clear_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("import sys\nsys.modules['matplotlib'] = None\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("--canary-plots=plots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--canary-plots needs matplotlib*pip install 'pytest-canary[[]plots[]]'*"]
    )


FAMILIES = {
    "replicas": ('"replicas", stable="1.0", canary="2.0"', "rel.expect_split(0.60)"),
    "vhost": (
        '"nginx", stable="1.0", canary="2.0", canary_host="canary.foo.bar"',
        'rel.expect_routed("1.0", headers={"Host": "canary.foo.bar"})',
    ),
    "istio": ('"istio", stable="v1", canary="v2", weight=10', "rel.expect_split(0.50)"),
    "gateway": ('"gateway", stable="1.0", canary="2.0", weight=80', "rel.expect_split(0.20)"),
    "bluegreen": ('"bluegreen", stable="1.0", canary="2.0"', 'rel.expect_routed("2.0")'),
    "rolling": ('"rolling", stable="1.0", canary="2.0"', "rel.expect_split(0.90)"),
}


def test_a_wrong_expectation_fails_readably_in_every_family(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "\n".join(
            f"def test_{family}(canary):\n    rel = canary.deploy({deploy})\n    {expectation}\n"
            for family, (deploy, expectation) in FAMILIES.items()
        )
    )
    result = pytester.runpytest("--canary-seed=4")
    result.assert_outcomes(failed=len(FAMILIES))
    for family in FAMILIES:
        block = _block(result.stdout.lines, f"test_{family}")
        expectation_lines = [line for line in block if line.startswith("E ")]
        assert any(" canary " in line and "expectation FAIL" in line for line in block), block
        assert any("version" in line and "observed" in line for line in expectation_lines), block
        assert any("classified, errors=0" in line for line in expectation_lines), block


def test_xdist_workers_report_verdicts_and_use_the_seed_the_header_prints(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("weight", [10, 30])
        def test_split(canary, weight):
            rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=weight)
            with open(f"counts-{weight}.txt", "a") as f:
                f.write(str(rel.sample(200).counts["2.0"]) + chr(10))
            rel.expect_routed("2.0", headers={"X-Canary": "always"})  # a quick verdict
        """
    )
    first = pytester.runpytest("-n", "2", "--canary-report=report.json", "--junitxml=junit.xml")
    first.assert_outcomes(passed=2)
    first.stdout.fnmatch_lines(["*canary verdicts*"])
    # The controller writes the JUnit file: its test suite names the seed the workers used.
    suite = ElementTree.parse(pytester.path / "junit.xml").find("testsuite")
    assert suite is not None
    suite_properties = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    # Workers finish in any order: each verdict appears once, whatever its place.
    for case in ("10", "30"):
        first.stdout.fnmatch_lines([f"*::test_split[[]{case}[]]", "  PASS*nginx*routed*"])
    report = json.loads((pytester.path / "report.json").read_text())
    assert sorted(v["test"].rsplit("[")[1] for v in report["verdicts"]) == ["10]", "30]"]
    seed = next(line for line in first.stdout.lines if "--canary-seed=" in line)
    seed = seed.split("--canary-seed=")[1].split()[0]
    assert suite_properties["canary.seed"] == seed
    # Each test's routing stream derives from the seed and its name only: a run without
    # xdist at the printed seed repeats what the workers saw.
    second = pytester.runpytest(f"--canary-seed={seed}")
    second.assert_outcomes(passed=2)
    for weight in (10, 30):
        runs = (pytester.path / f"counts-{weight}.txt").read_text().split()
        assert len(runs) == 2 and runs[0] == runs[1], (weight, runs)


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (
            "--canary-alpha=abc",
            "alpha 'abc' from command line --canary-alpha: must be a number in (0, 0.5)",
        ),
        (
            "--canary-max-requests=lots",
            "max_requests 'lots' from command line --canary-max-requests: "
            "must be an integer from 1 to 1,000,000",
        ),
        (
            "--canary-max-requests=10000000",
            "max_requests '10000000' from command line --canary-max-requests: "
            "must be an integer from 1 to 1,000,000",
        ),
        (
            "--canary-concurrency=5000",
            "concurrency '5000' from command line --canary-concurrency: "
            "must be an integer from 1 to 256",
        ),
        (
            "--canary-timeout=nan",
            "timeout 'nan' from command line --canary-timeout: "
            "must be a number above 0 and at most 600",
        ),
    ],
)
def test_non_numeric_options_say_what_is_allowed(
    pytester: pytest.Pytester, flag: str, message: str
) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(flag)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_progress_lines_show_while_output_is_captured(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain run (capture on, no ``-s``) on kind with a stand-in ``kind`` that reports an
    existing cluster: the step's progress line reaches the terminal before the setup stops
    (here: no Docker engine to read the cluster's ports from)."""
    tools = pytester.mkdir("tools")
    kind = tools / "kind"
    kind.write_text(
        '#!/bin/sh\ncase "$1 $2" in\n'
        "  'version ') echo 'kind v0.31.0 go1.25.5 linux/amd64' ;;\n"
        "  'get clusters') echo pytest-canary ;;\n"
        "esac\n"
    )
    kubectl = tools / "kubectl"
    kubectl.write_text("#!/bin/sh\nexit 0\n")
    for tool in (kind, kubectl):
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # a faster start: ours only
    pytester.makepyfile("def test_x(canary): pass")
    result = pytester.runpytest_subprocess(
        "-p",
        "pytest_canary.plugin",
        "--canary-backend=kind",
        "--canary-addons=none",
        f"--canary-cache-dir={tools}/cache",
    )
    result.stdout.fnmatch_lines(
        [
            "canary [[] *s[]] reusing kind cluster pytest-canary (not deleted at the end)",
            "*canary: the kind backend could not start: no Docker engine answers at *",
        ]
    )


HEAVY_MODULES = ("aiohttp", "jsonschema", "yaml", "kubernetes", "docker", "pytest_canary.harness")


def test_loading_the_plugin_imports_nothing_heavy(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin is loaded in every pytest run of every project that installs it: a run that
    uses no canary fixture must not pay for aiohttp, jsonschema, YAML, Kubernetes, Docker or
    the harness. Only our plugin is loaded (other plugins import some of these)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeconftest(
        f"""
        import sys

        def pytest_unconfigure(config):
            loaded = [m for m in {HEAVY_MODULES!r} if m in sys.modules]
            with open("loaded.txt", "w") as f:
                f.write(" ".join(loaded))
        """
    )
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("-p", "pytest_canary.plugin")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["canary: local backend modelling*"])  # the plugin was on
    assert (pytester.path / "loaded.txt").read_text() == ""


def test_a_backend_that_fails_to_close_ends_the_session_with_one_error_line(
    pytester: pytest.Pytester,
) -> None:
    """Leftovers the backend could not delete are said on the terminal, the exit status is
    not 0, and no traceback from inside pytest_sessionfinish is printed."""
    pytester.makeconftest(
        """
        import pytest
        from pytest_canary.errors import BackendError

        @pytest.fixture(scope="session", autouse=True)
        def close_fails(canary_backend):
            real = canary_backend.close

            def close():
                real()
                raise BackendError("cleanup of canary-test-ab12c failed: Namespace: forbidden")

            canary_backend.close = close
        """
    )
    pytester.makepyfile("def test_ok(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*canary: closing the local backend failed: cleanup of canary-test-ab12c failed: "
            "Namespace: forbidden*"
        ]
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in result.stdout.str()


def test_health_verdicts_reach_the_summary_report_and_plots(pytester: pytest.Pytester) -> None:
    """expect_healthy's verdicts travel like every verdict: the failure message is the health
    table, the terminal summary lists them, the JSON report holds their flat fields (and
    Verdict.from_json restores them), and --canary-plots draws one PNG each."""
    pytester.makepyfile(
        """
        def test_healthy(canary):
            rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50)
            rel.expect_healthy(max_latency_increase=0.5)

        def test_failing(canary):
            rel = canary.deploy(
                "nginx", stable="1.0", canary="2.0", weight=50, canary_error_rate=0.1
            )
            rel.expect_healthy()
        """
    )
    result = pytester.runpytest(
        "--canary-seed=3", "--canary-report=report.json", "--canary-plots=plots"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E * canary health expectation FAIL: errors: the canary fails at least*",
            "E *version*role*n*errors*error rate*interval*p95*interval*",
            "E *2.0*canary*",
            "E *1.0*stable*",
            "E *errors (error increase)*FAIL*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*canary verdicts*",
            "*::test_healthy",
            "*PASS*nginx*health*err<=+0.01 p95<=x1.5*err+0.0* p95 x*",
            "*::test_failing",
            "*FAIL*nginx*health*err<=+0.01 p95<=x1.2*err+0.*",
        ]
    )
    report = json.loads((pytester.path / "report.json").read_text())
    healthy, failing = sorted(report["verdicts"], key=lambda v: v["decision"], reverse=True)
    assert healthy["kind"] == failing["kind"] == "health"
    assert healthy["checks"] == {"errors": "PASS", "latency": "PASS"}
    assert failing["checks"]["errors"] == "FAIL"
    assert failing["roles"] == {"2.0": "canary", "1.0": "stable"}
    low, high = failing["intervals"]["error increase"]
    assert 0.01 < low < high
    assert set(failing["error_intervals"]) == {"1.0", "2.0"}
    assert failing["limits"] == {
        "max_error_increase": 0.01,
        "max_latency_increase": 0.2,
        "quantile": 0.95,
    }
    from pytest_canary.report import Verdict

    for verdict in (healthy, failing):
        assert Verdict.from_json(verdict).to_json() == verdict
    pngs = sorted(p.name for p in (pytester.path / "plots").iterdir())
    assert len(pngs) == 2 and all(name.endswith("-health.png") for name in pngs)


def test_a_fork_server_that_cannot_run_is_told_on_the_terminal(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pods started as separate interpreters are slower: the run says so once, past the
    output capture, with the reason (here: a fork server that exits at once)."""
    from pytest_canary.backends.local import fork_server

    broken = pytester.path / "broken_zygote.py"
    broken.write_text("raise SystemExit(3)\n")
    monkeypatch.setattr(fork_server, "ZYGOTE", broken)
    monkeypatch.setattr(fork_server, "_server", None)
    monkeypatch.setattr(fork_server, "_failure", None)
    pytester.makepyfile(
        """
        def test_one(canary):
            rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50)
            assert sum(rel.sample(20).counts.values()) == 20

        def test_two(canary):
            rel = canary.deploy("istio", stable="1.0", canary="2.0", weight=50)
            assert sum(rel.sample(20).counts.values()) == 20
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["canary [[] *s[]] pods start as separate interpreters*fork server did not start*"]
    )
    assert result.stdout.str().count("pods start as separate interpreters") == 1


def test_the_seed_reaches_a_quiet_run_and_its_junit_report(pytester: pytest.Pytester) -> None:
    """With -q the report header (which names the seed) is not printed: the verdicts'
    section names it, and the JUnit test suite carries it as ``canary.seed`` (under xdist
    too: test_xdist_workers_report_verdicts_and_use_the_seed_the_header_prints)."""
    pytester.makepyfile(
        """
        def test_split(canary):
            rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=0)
            rel.expect_routed("1.0")
        """
    )
    result = pytester.runpytest("-q", "--canary-seed=7", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*= canary verdicts (--canary-seed=7) =*"])
    suite = ElementTree.parse(pytester.path / "junit.xml").find("testsuite")
    assert suite is not None
    properties = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert properties == {"canary.seed": "7"}
