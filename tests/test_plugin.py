"""The plugin as a user meets it: options, header, fixtures, failure output, cleanup."""

from __future__ import annotations

import json
import time

import pytest

NGINX_TEST = """
def test_weighted(canary):
    rel = canary.deploy(strategy="nginx", stable="1.0", canary="2.0", weight={weight})
    rel.expect_split({share})
"""


def test_header_names_backend_models_seed_and_alpha(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--canary-seed=42")
    result.stdout.fnmatch_lines(
        [
            "canary: local backend modelling ingress-nginx controller-v1.15.1 canary rules*",
            "canary: --canary-seed=42 alpha=0.001 tolerance=0.05",
        ]
    )


def test_issue_example_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
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
    )
    result = pytester.runpytest("--canary-seed=1")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*canary verdicts*",
            "result*test*strategy*check*expected*observed*n*errors*time",
            "PASS*test_weighted_canary*nginx*split*2.0=0.20 1.0=0.80*",
            "PASS*test_weighted_canary*nginx*routed (X-Canary: always)*2.0=1.00*2.0=1.000*",
        ]
    )


def test_wrong_expectation_fails_with_the_table_in_bounded_requests(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(NGINX_TEST.format(weight=30, share=0.60))
    result = pytester.runpytest("--canary-seed=1", "--canary-report=report.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*canary split expectation FAIL: share of '2.0' is outside [[]0.550, 0.650[]]*",
            "*version*expected*band*observed*interval*count*",
            "*2.0*0.600*[[]0.550, 0.650[]]*",
            "*n=* classified, errors=0 (none), alpha=0.001, tolerance=0.05*",
        ]
    )
    report = json.loads((pytester.path / "report.json").read_text())
    (verdict,) = report["verdicts"]
    assert verdict["decision"] == "FAIL"
    # A gross error is decided long before the fixed design's ~2,600 requests.
    assert verdict["requests"] < 400, verdict["requests"]


def test_failure_report_carries_diagnostics(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(NGINX_TEST.format(weight=30, share=0.60))
    result = pytester.runpytest("--canary-seed=1")
    result.stdout.fnmatch_lines(
        [
            "*canary diagnostics*",
            "*--- pods ---*",
            "*kubeapp-canary-*Ready Running*",
            "*--- router access log (last 25) ---*",
            "*--- manifests of kubeapp (canary) ---*",
            "*nginx.ingress.kubernetes.io/canary-weight: '30'*",
        ]
    )


def test_bad_weight_names_the_field(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(NGINX_TEST.format(weight=150, share=0.5))
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*CanaryConfigError: weight=150: must be an integer from 0 to 100*"]
    )
    assert "Traceback" not in result.stdout.str().split("CanaryConfigError")[0].splitlines()[-1]


def test_typo_in_header_name_is_caught(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_header(canary):
            rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=20)
            rel.expect_routed("2.0", headers={"X-Canry": "always"})
        """
    )
    result = pytester.runpytest("--canary-seed=3")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*routed expectation FAIL for X-Canry: always*responses from 1.0*"]
    )


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
    result.stderr.fnmatch_lines(["*--canary-backend=minikube: must be one of local, kind, kube*"])
    result = pytester.runpytest("--canary-seed=abc")
    result.stderr.fnmatch_lines(["*--canary-seed=abc: must be an integer or 'last'*"])


def test_seed_last_repeats_the_previous_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_counts(canary):
            rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=30)
            with open("counts.txt", "a") as f:
                f.write(str(rel.sample(300).counts["2.0"]) + chr(10))
        """
    )
    first = pytester.runpytest()
    second = pytester.runpytest("--canary-seed=last")
    counts = (pytester.path / "counts.txt").read_text().split()
    assert len(counts) == 2 and counts[0] == counts[1]
    seed_line = next(line for line in first.stdout.lines if "--canary-seed=" in line)
    assert seed_line.split("--canary-seed=")[1].split()[0] in "".join(second.stdout.lines)


PID_RECORDING_TEST = """
import os, signal

def test_release(canary):
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50, replicas=2)
    pids = [pod.stopper.process.pid for pod in canary.environment.pods]
    ports = [pod.port for pod in canary.environment.pods] + [int(rel.url.rsplit(":", 1)[1])]
    with open("pids.txt", "w") as f:
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


@pytest.mark.parametrize(
    "action",
    [
        "rel.expect_split(0.5)",
        "rel.expect_split(0.9)",
        "raise RuntimeError('boom')",
        "os.kill(os.getpid(), signal.SIGINT)",
    ],
    ids=["passed", "failed", "error", "ctrl-c"],
)
def test_nothing_is_left_running_after_a_test(pytester: pytest.Pytester, action: str) -> None:
    pytester.makepyfile(PID_RECORDING_TEST.format(action=action))
    pytester.runpytest_subprocess("--canary-seed=5", timeout=120)
    pids_line, ports_line = (pytester.path / "pids.txt").read_text().splitlines()
    pids = [int(p) for p in pids_line.split()]
    ports = [int(p) for p in ports_line.split()]
    assert len(pids) == 4
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)]
    assert all(_port_free(p) for p in ports)


def test_pods_die_with_a_killed_pytest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PID_RECORDING_TEST.format(action="os.kill(os.getpid(), signal.SIGKILL)"))
    pytester.runpytest_subprocess("--canary-seed=5", timeout=120)
    pids = [int(p) for p in (pytester.path / "pids.txt").read_text().splitlines()[0].split()]
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


@pytest.mark.parametrize(
    ("deploy", "expectation"),
    [
        ('"replicas", stable="1.0", canary="2.0"', "rel.expect_split(0.60)"),
        (
            '"nginx", stable="1.0", canary="2.0", canary_host="canary.foo.bar"',
            'rel.expect_routed("1.0", headers={"Host": "canary.foo.bar"})',
        ),
        ('"istio", stable="v1", canary="v2", weight=10', "rel.expect_split(0.50)"),
        ('"gateway", stable="1.0", canary="2.0", weight=80', "rel.expect_split(0.20)"),
        ('"bluegreen", stable="1.0", canary="2.0"', 'rel.expect_routed("2.0")'),
        ('"rolling", stable="1.0", canary="2.0"', "rel.expect_split(0.90)"),
    ],
    ids=["replicas", "vhost", "istio", "gateway", "bluegreen", "rolling"],
)
def test_a_wrong_expectation_fails_readably_in_every_family(
    pytester: pytest.Pytester, deploy: str, expectation: str
) -> None:
    pytester.makepyfile(
        f"""
        def test_wrong(canary):
            rel = canary.deploy({deploy})
            {expectation}
        """
    )
    result = pytester.runpytest("--canary-seed=4")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E * canary * expectation FAIL*",
            "E *version*expected*observed*count*",
            "E *n=* classified, errors=0*",
        ]
    )


def test_verdicts_reach_the_summary_and_report_from_xdist_workers(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("weight", [10, 30])
        def test_split(canary, weight):
            rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=weight)
            rel.expect_split(weight / 100)
        """
    )
    result = pytester.runpytest("-n", "2", "--canary-seed=8", "--canary-report=report.json")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*canary verdicts*"])
    # Workers finish in any order: each verdict appears once, whatever its place.
    for case in ("10", "30"):
        result.stdout.fnmatch_lines([f"PASS*test_split[[]{case}[]]*nginx*split*"])
    report = json.loads((pytester.path / "report.json").read_text())
    assert sorted(v["expected"]["2.0"] for v in report["verdicts"]) == [0.1, 0.3]


def test_xdist_workers_use_the_seed_the_header_prints(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("i", range(4))
        def test_counts(canary, i):
            rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=30)
            with open(f"counts-{i}.txt", "a") as f:
                f.write(str(rel.sample(200).counts["2.0"]) + chr(10))
        """
    )
    first = pytester.runpytest("-n", "2", "-p", "cacheprovider")
    seed = next(line for line in first.stdout.lines if "--canary-seed=" in line)
    seed = seed.split("--canary-seed=")[1].split()[0]
    second = pytester.runpytest("-n", "2", f"--canary-seed={seed}")
    first.assert_outcomes(passed=4)
    second.assert_outcomes(passed=4)
    for i in range(4):
        runs = (pytester.path / f"counts-{i}.txt").read_text().split()
        assert len(runs) == 2 and runs[0] == runs[1], (i, runs)


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
            "must be an integer of 1 or more",
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
