"""pytest wiring of pytest-canary: options, ini keys, the marker, fixtures, header and summary.

No logic lives here that a script could not call without pytest: see ``harness``,
``backends``, ``config`` and ``report``. This module is loaded in every pytest run of every
project that installs the plugin, so it imports nothing heavy at module level: the harness,
the backends (aiohttp, kubernetes, docker) and the plots load in the hooks and fixtures
that need them.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_canary import config as options
from pytest_canary.errors import BackendError, CanaryConfigError, CanaryError

if TYPE_CHECKING:
    from pytest_canary.backends.base import Backend
    from pytest_canary.config import Settings
    from pytest_canary.harness import Harness
    from pytest_canary.report import Verdict, VerdictLog

PACKAGE_DIR = Path(__file__).resolve().parent
RUNS_CACHE_DIR = "canary-runs"  # under .pytest_cache/d/: one record per finished run

backend_key: pytest.StashKey[Backend] = pytest.StashKey()
verdicts_key: pytest.StashKey[VerdictLog] = pytest.StashKey()
pending_verdicts_key: pytest.StashKey[list[Verdict]] = pytest.StashKey()
verdict_count_key = pytest.StashKey[int]()
VERDICT_PROPERTY = "canary_verdict"
seed_key = pytest.StashKey[int]()
seed_origin_key = pytest.StashKey[str]()
resolved_key = pytest.StashKey[dict[str, options.Resolved]]()
settings_key: pytest.StashKey[Settings] = pytest.StashKey()
harness_key: pytest.StashKey[Harness] = pytest.StashKey()
swept_key = pytest.StashKey[list[str]]()
cluster_options_key = pytest.StashKey[Any]()  # KubeOptions or KindOptions
run_id_key = pytest.StashKey[str]()
kept_key = pytest.StashKey[list[str]]()
progress_key = pytest.StashKey[Callable[[str], None]]()

# Options of the kind and kube backends: (flag, ini key or None, metavar, help, action).
# One help text for the flag and its ini key; values resolve CLI > PYTEST_CANARY_* > ini
# (config.resolve, as every other option); the backend validates them.
CLUSTER_OPTIONS: tuple[tuple[str, str | None, str | None, str, str], ...] = (
    (
        "--kube-context",
        None,
        "NAME",
        "Kubernetes context of --canary-backend=kube. Naming it is what allows a context that does "
        "not look like a test cluster (kind-*, minikube, docker-desktop, k3d-*).",
        "store",
    ),
    (
        "--canary-kubeconfig",
        "canary_kubeconfig",
        "PATH",
        "Kubeconfig of --canary-backend=kube (default: $KUBECONFIG or ~/.kube/config); with "
        "kind, the file the cluster's kubeconfig is written to (default: in the cache). "
        "pytest-kind's --kubeconfig means the same.",
        "store",
    ),
    (
        "--canary-entry-url",
        "canary_entry_url",
        "[STRATEGY=]URL",
        "Where a strategy's traffic enters the kube cluster, e.g. nginx=http://203.0.113.10 (the "
        "ingress controller) or istio=http://203.0.113.11 (the Istio gateway); without STRATEGY= "
        "for all. Repeatable.",
        "append",
    ),
    (
        "--canary-ingress-class",
        "canary_ingress_class",
        "NAME",
        "IngressClass to set on every Ingress (default: as rendered, nginx).",
        "store",
    ),
    (
        "--canary-gateway",
        "canary_gateway",
        "NAMESPACE/SERVICE",
        "The Istio ingress gateway Service that istio and gateway traffic enters: Istio Gateways "
        "select its pods and Gateway API Gateways bind to it (kind: istio-system/"
        "istio-ingressgateway).",
        "store",
    ),
    (
        "--canary-node-address",
        "canary_node_address",
        "HOST",
        "Address of a node, to reach the NodePort Services replicas, bluegreen and rolling "
        "traffic enters (kube; default: a node's ExternalIP or InternalIP, which Docker Desktop "
        "on macOS and Windows does not route: name a host that forwards the NodePorts).",
        "store",
    ),
    (
        "--canary-any-kubernetes-version",
        "canary_any_kubernetes_version",
        None,
        "Run on a cluster outside the Kubernetes versions the pinned add-ons support (checked "
        "before anything is installed or applied) instead of stopping.",
        "store_true",
    ),
    (
        "--canary-keep",
        "canary_keep",
        "never|failed|always",
        "Keep test namespaces after the test: never (default), failed (only failed tests'), or "
        "always (the bare flag). Kept namespaces give up their hosts: their Ingress/routes move to "
        "a ConfigMap.",
        "keep",
    ),
    (
        "--canary-artifacts",
        "canary_artifacts",
        "DIR",
        "Write each failed test's canary diagnostics (manifests, events, pods, logs) to files "
        "under DIR.",
        "store",
    ),
    (
        "--canary-wait-timeout",
        "canary_wait_timeout",
        "SECONDS",
        "Deadline of each wait for workloads, endpoints, ingress admission and the Argo "
        "Rollouts controller (plus what is left of a timed pause) (default 180).",
        "store",
    ),
    (
        "--canary-dataplane-timeout",
        "canary_dataplane_timeout",
        "SECONDS",
        "Deadline for the data plane to serve a change before traffic is sampled (default 60).",
        "store",
    ),
    (
        "--canary-kind-cluster",
        "canary_kind_cluster",
        "NAME",
        "Name of the kind cluster to create or reuse (default pytest-canary). pytest-kind's "
        "--cluster-name means the same.",
        "store",
    ),
    (
        "--canary-keep-cluster",
        "canary_keep_cluster",
        "always|failed|never",
        "When the kind cluster this run created outlives it: always (the bare flag; reuse it next "
        "session), failed (the default: only when its setup failed, for inspection) or never. "
        "A cluster this run did not create, or another run still uses, is never deleted. "
        "pytest-kind's --keep-cluster means always.",
        "keep",
    ),
    (
        "--canary-kind-image",
        "canary_kind_image",
        "IMAGE",
        "kind node image of a new cluster (default: the pinned kindest/node:v1.35.0@sha256:...). "
        "pytest-kind's --kind-image means the same.",
        "store",
    ),
    (
        "--canary-kind-bin",
        "canary_kind_bin",
        "PATH",
        "The kind binary (default: kind on PATH). pytest-kind's --kind-bin means the same.",
        "store",
    ),
    (
        "--canary-kubectl-bin",
        "canary_kubectl_bin",
        "PATH",
        "The kubectl binary of the kind backend (default: kubectl on PATH). pytest-kind's "
        "--kind-kubectl-bin means the same.",
        "store",
    ),
    (
        "--canary-kind-http-port",
        "canary_kind_http_port",
        "PORT",
        "Host port (127.0.0.1) for ingress-nginx on a new kind cluster (default: a free one).",
        "store",
    ),
    (
        "--canary-kind-gateway-port",
        "canary_kind_gateway_port",
        "PORT",
        "Host port (127.0.0.1) for the Istio ingress gateway on a new kind cluster (default: a "
        "free one).",
        "store",
    ),
    (
        "--canary-addons",
        "canary_addons",
        "LIST",
        "Add-ons to install on kind, comma-separated: gateway-api, ingress-nginx, istio (default "
        "all three), argo-rollouts (otherwise installed when a test first needs it) or none.",
        "store",
    ),
    (
        "--canary-addon-file",
        "canary_addon_file",
        "NAME=PATH",
        "Use a local file for an add-on instead of downloading it (air-gapped machines), e.g. "
        "ingress-nginx=deploy.yaml or istio=istioctl-1.30.3-linux-amd64.tar.gz. Repeatable.",
        "append",
    ),
    (
        "--canary-cache-dir",
        "canary_cache_dir",
        "DIR",
        "Downloads, kubeconfigs and locks of the kind backend (default ~/.cache/pytest-canary).",
        "store",
    ),
    (
        "--canary-setup-timeout",
        "canary_setup_timeout",
        "SECONDS",
        "Deadline of kind cluster creation and of each add-on install (default 900).",
        "store",
    ),
)


# pytest-kind's options (visible in pytest --help next to ours): with --canary-backend=kind
# (and, for --kubeconfig, kube) each means the option of ours it names; never accepted and
# ignored. (pytest-kind dest, our option dest, pytest-kind's default).
PYTEST_KIND_ALIASES: tuple[tuple[str, str, Any], ...] = (
    ("keep_cluster", "canary_keep_cluster", False),
    ("cluster_name", "canary_kind_cluster", "pytest-kind"),
    ("kubeconfig", "canary_kubeconfig", None),
    ("kind_image", "canary_kind_image", None),
    ("kind_bin", "canary_kind_bin", None),
    ("kind_kubectl_bin", "canary_kubectl_bin", None),
)


def _cluster_option(
    flag: str, ini: str | None, metavar: str | None, text: str, action: str
) -> options.Option:
    if action == "store_true":
        return options.Option(flag, text, options.boolean, action="store_true", has_ini=bool(ini))
    if action == "keep":
        return options.Option(
            flag, text, metavar=metavar, action="optional", const="always", has_ini=bool(ini)
        )
    return options.Option(flag, text, metavar=metavar, action=action, has_ini=bool(ini))


CLUSTER = tuple(_cluster_option(*row) for row in CLUSTER_OPTIONS)
ALL_OPTIONS = (*options.SETTINGS, *options.SESSION_OPTIONS, *CLUSTER)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("canary", "canary releases (pytest-canary)")
    for option in ALL_OPTIONS:
        if option.action == "store_true":
            group.addoption(option.flag, action="store_true", default=None, help=option.help)
        elif option.action == "optional":
            group.addoption(
                option.flag,
                nargs="?",
                const=option.const,
                default=None,
                metavar=option.metavar,
                help=option.help,
            )
        else:
            group.addoption(
                option.flag,
                action=option.action,
                default=None,
                metavar=option.metavar,
                help=option.help,
            )
        if option.ini is None:
            continue
        kind = {"store_true": "bool", "append": "linelist"}.get(option.action, "string")
        parser.addini(option.ini, option.help, type=kind, default=None)  # type: ignore[arg-type]


# -- settings: one resolver (config.resolve) over the places pytest offers --------------------


def _environment_value(option: options.Option) -> Any:
    raw = os.environ.get(option.env)
    if raw and option.action == "append":
        return raw.split()
    return raw


def _sources(config: pytest.Config, marker: dict[str, Any] | None = None) -> list[options.Source]:
    """The places settings come from, highest precedence first (the call's own arguments
    are the harness's: ``Settings.with_arguments``)."""
    sources = (
        []
        if marker is None
        else [options.mapping_source("@pytest.mark.canary({name}=...)", marker)]
    )
    return [
        *sources,
        options.Source("command line {flag}", lambda o: config.getoption(o.dest)),
        options.Source("environment {env}", _environment_value),
        options.Source("ini {ini}", lambda o: config.getini(o.ini) if o.ini else None),
    ]


def _resolved(config: pytest.Config, name: str) -> Any:
    return config.stash[resolved_key][name].value


def _cluster_values(config: pytest.Config) -> dict[str, tuple[str, Any]]:
    """What the cluster options say, for ``kind.cluster_options``: dest -> (origin, value).
    pytest-kind's options count as our command-line options they alias."""
    resolved = config.stash[resolved_key]
    values = {
        o.dest: (resolved[o.name].origin, resolved[o.name].value)
        for o in CLUSTER
        if resolved[o.name].origin != "default"
    }
    backend = _resolved(config, "backend")
    for alias, name, default in PYTEST_KIND_ALIASES if backend != "local" else ():
        if backend == "kube" and alias != "kubeconfig":
            continue  # pytest-kind's own kind_cluster fixture reads the rest
        flag = "--" + alias.replace("_", "-")
        value = config.getoption(alias, default=default)
        if value == default and not _given(config, flag):
            continue
        ours = values.get(name)
        if (
            ours is not None
            and ours[0].startswith("command line")
            and str(ours[1]) != str(value if value is not True else "always")
        ):
            raise CanaryConfigError(
                f"{flag}={value!r} (pytest-kind) and {ours[0].removeprefix('command line ')}="
                f"{ours[1]!r} name the same setting with different values: pass one of them"
            )
        values[name] = (f"command line {flag} (pytest-kind)", value)
    return values


def _test_settings(config: pytest.Config, node: pytest.Item) -> Settings:
    marker: dict[str, Any] = {}
    for mark in reversed(list(node.iter_markers("canary"))):
        marker.update(mark.kwargs)
    unknown = options.unknown_settings(marker)
    if unknown:
        raise CanaryConfigError(
            f"@pytest.mark.canary({', '.join(unknown)}=...): unknown setting; known: "
            f"{', '.join(options.BY_NAME)}"
        )
    if not marker:
        return config.stash[settings_key]
    return options.Settings.resolved(_sources(config, marker))


@pytest.hookimpl(trylast=True)  # after the cache provider
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "canary(alpha=None, tolerance=None, leak=None, max_requests=None, concurrency=None, "
        "timeout=None): statistical and traffic settings of pytest-canary for this test.",
    )
    config.pluginmanager.register(VerdictCollector(config), "canary-verdicts")
    try:
        # Every setting once, so that a typo fails the run once, not every test.
        config.stash[resolved_key] = options.resolve(ALL_OPTIONS, _sources(config))
        config.stash[settings_key] = options.Settings.resolved(_sources(config))
        if _resolved(config, "plots"):
            from pytest_canary.plots import require_matplotlib

            require_matplotlib()
    except CanaryConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[progress_key] = _progress(config)
    config.stash[seed_key] = _resolve_seed(config)
    name = _resolved(config, "backend")
    if name != "local":
        from pytest_canary.backends.kind import cluster_options, new_run_id

        workerinput = getattr(config, "workerinput", {})
        config.stash[run_id_key] = workerinput.get("canary_run_id") or new_run_id()
        try:
            config.stash[cluster_options_key] = cluster_options(name, _cluster_values(config))
        except CanaryConfigError as exc:
            raise pytest.UsageError(str(exc)) from None


def _given(config: pytest.Config, flag: str) -> bool:
    """Whether ``flag`` is on the command line (or in addopts), even at its default value."""
    import shlex

    args = [str(a) for a in config.invocation_params.args]
    args += shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))
    args += [str(a) for a in config.getini("addopts") or []]
    return any(a == flag or a.startswith(flag + "=") for a in args)


def _runs_folder(config: pytest.Config) -> Path | None:
    cache = getattr(config, "cache", None)  # absent with -p no:cacheprovider
    return None if cache is None else Path(cache.mkdir(RUNS_CACHE_DIR))


def _resolve_seed(config: pytest.Config) -> int:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and "canary_seed" in workerinput:
        # An xdist worker: the controller resolved the seed for everyone.
        config.stash[seed_origin_key] = ""
        return int(workerinput["canary_seed"])
    seed = config.stash[resolved_key]["seed"]
    config.stash[seed_origin_key] = ""
    if seed.value == "last":
        from pytest_canary.runs import last_run

        folder = _runs_folder(config)
        record = last_run(folder) if folder is not None else None
        if record is None:
            raise pytest.UsageError(
                f"--canary-seed=last (from {seed.origin}): no previous run recorded a seed"
                + ("" if folder is not None else " (the cache provider is disabled)")
            )
        config.stash[seed_origin_key] = record.describe()
        return record.seed
    if seed.value is not None:
        return int(seed.value)
    return random.randrange(10**9)


def pytest_report_header(config: pytest.Config) -> list[str]:
    name = _resolved(config, "backend")
    settings = config.stash[settings_key]
    if name == "local":
        from pytest_canary.backends.descriptions import MODELS, RUNTIMES

        runtime = _resolved(config, "runtime")
        what = f"local backend modelling {MODELS}; pods as {RUNTIMES[runtime]} " + (
            f"(--canary-runtime={runtime})"
        )
    else:
        cluster = config.stash[cluster_options_key]
        what = (
            f"{name} backend ({cluster.describe()})"
            if hasattr(cluster, "describe")
            else (f"{name} backend")
        )
    origin = config.stash.get(seed_origin_key, "")
    lines = [
        f"canary: {what}",
        f"canary: --canary-seed={config.stash[seed_key]} alpha={settings.alpha:g} "
        f"tolerance={settings.tolerance:g}"
        + (f" (--canary-seed=last: {origin})" if origin else ""),
    ]
    swept = config.stash.get(swept_key, [])
    if swept:
        lines.append(f"canary: removed {len(swept)} container(s) left by dead runs")
    return lines


# -- the backend and its progress lines -----------------------------------------------------


def _progress(config: pytest.Config) -> Callable[[str], None]:
    """One progress line per step of a long setup (kind cluster, add-ons, image builds,
    Docker runtime), with the time since the session started, shown while output capture is
    on: written past the capture manager, through the terminal reporter."""
    started = time.monotonic()
    lock = threading.Lock()  # image builds may report from several threads at once

    def show(message: str) -> None:
        line = f"canary [{time.monotonic() - started:6.1f}s] {message}"
        with lock:
            _write_past_capture(config, line)

    return show


def _write_past_capture(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:  # an xdist worker (no terminal of its own) or -p no:terminal
        stream = sys.__stderr__
        if stream is not None:
            stream.write(line + "\n")
            stream.flush()
        return
    if capture is None:
        reporter.write_line(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


def _make_backend(config: pytest.Config) -> Backend:
    name = _resolved(config, "backend")
    progress = config.stash[progress_key]
    if name == "local":
        from pytest_canary.backends.local import LocalBackend, make_runtime

        runtime = _resolved(config, "runtime")
        # The session start already swept leftovers of dead runs.
        extra: dict[str, Any] = {"progress": progress}
        if runtime == "docker":
            extra["sweep"] = False
        try:
            return LocalBackend(seed=config.stash[seed_key], runtime=make_runtime(runtime, **extra))
        except BackendError as exc:
            pytest.exit(f"canary: the local backend could not start: {exc}", returncode=3)
    from pytest_canary.backends.kind import make_cluster_backend

    workerinput = getattr(config, "workerinput", {})
    try:
        return make_cluster_backend(
            config.stash[cluster_options_key],
            run_id=config.stash[run_id_key],
            handoff=workerinput.get("canary_cluster"),
            progress=progress,
        )
    except (BackendError, CanaryConfigError) as exc:
        # One clear error for the session instead of the same error in every test.
        pytest.exit(f"canary: the {name} backend could not start: {exc}", returncode=3)


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    _seed_in_junit(config)
    name = _resolved(config, "backend")
    if (
        name == "kind"
        and config.pluginmanager.has_plugin("dsession")  # the xdist controller
        and backend_key not in config.stash
    ):
        # One cluster for all workers: created here, handed over in pytest_configure_node.
        config.stash[backend_key] = _make_backend(config)
    if name != "local" or _resolved(config, "runtime") != "docker":
        return
    from pytest_canary.backends.local.docker_runtime import sweep_dead_runs
    from pytest_canary.images import engine

    try:
        # Containers of runs whose pytest was killed (no teardown ran): removed before we start.
        with engine() as client:
            config.stash[swept_key] = sweep_dead_runs(client)
    except BackendError as exc:
        raise pytest.UsageError(f"--canary-runtime=docker: {exc}") from None


def _seed_in_junit(config: pytest.Config) -> None:
    """The run's seed as a property of the JUnit test suite (``canary.seed``): with ``-q``
    the report header is not printed, and a CI log may not be kept; the XML is."""
    if hasattr(config, "workerinput"):
        return  # the controller writes the XML
    try:
        from _pytest.junitxml import xml_key  # pytest's own key of its LogXML (7.0 to 9.x)
    except ImportError:  # a pytest that renamed it: the header and summary still say it
        return
    xml = config.stash.get(xml_key, None)
    if xml is not None:
        xml.add_global_property("canary.seed", str(config.stash[seed_key]))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: workers use the controller's seed, attach to its cluster and share its run id."""
    config = node.config
    node.workerinput["canary_seed"] = config.stash[seed_key]
    if run_id_key in config.stash:
        node.workerinput["canary_run_id"] = config.stash[run_id_key]
    backend = config.stash.get(backend_key, None)
    handoff = getattr(backend, "handoff", None)
    if handoff is not None:
        node.workerinput["canary_cluster"] = handoff()


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def canary_backend(pytestconfig: pytest.Config) -> Backend:
    """The session's backend (local, kind or kube), created once and closed at the end."""
    if backend_key not in pytestconfig.stash:
        pytestconfig.stash[backend_key] = _make_backend(pytestconfig)
    return pytestconfig.stash[backend_key]


@pytest.fixture
def canary_settings(request: pytest.FixtureRequest) -> Settings:
    """Statistical and traffic settings of this test (marker > CLI > env > ini > default).
    Override it in a conftest.py to set your own."""
    try:
        return _test_settings(request.config, request.node)
    except CanaryConfigError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def canary(
    request: pytest.FixtureRequest, canary_backend: Backend, canary_settings: Settings
) -> Generator[Harness, None, None]:
    """A canary harness in a fresh, isolated environment of the chosen backend.

    ``canary.deploy(strategy, stable, canary, **routing)`` returns a release to change,
    sample and assert on; everything deployed is deleted when the test ends.
    """
    from pytest_canary.harness import Harness

    environment = canary_backend.environment(request.node.nodeid)
    pending = request.node.stash.setdefault(pending_verdicts_key, [])
    harness = Harness(
        environment, canary_settings, on_verdict=pending.append, test_name=request.node.nodeid
    )
    request.node.stash[harness_key] = harness
    try:
        yield harness
    finally:
        harness.close()


# -- reports -----------------------------------------------------------------------------------


def _is_ours(filename: str) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(PACKAGE_DIR)
    except (ValueError, OSError):
        return False


def _hide_own_frames(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """Unlink this package's frames from the traceback of an error we raised on purpose: its
    message names the problem, and the frames that matter are the test's (``--full-trace``
    keeps them all). pytest rebuilds tracebacks from the raw chain, so the chain itself is
    relinked; the first frame (pytest's runner) always stays."""
    head = excinfo.tb
    node = head
    while node.tb_next is not None:
        following = node.tb_next
        if _is_ours(following.tb_frame.f_code.co_filename):
            node.tb_next = following.tb_next
        else:
            node = following
    excinfo.traceback = type(excinfo.traceback)(head)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    excinfo = call.excinfo
    if excinfo is not None and not item.config.getoption("fulltrace", False):
        from pytest_canary.report import CanaryAssertionError

        if isinstance(excinfo.value, (CanaryError, CanaryAssertionError)):
            _hide_own_frames(excinfo)
    report = yield
    _attach_verdicts(item, report)
    harness = item.stash.get(harness_key, None)
    if harness is not None and report.when in ("setup", "call") and report.failed:
        record_failure = getattr(harness.environment, "record_failure", None)
        if record_failure is not None:
            record_failure()  # --canary-keep=failed
    configuration_error = excinfo is not None and isinstance(excinfo.value, CanaryConfigError)
    if harness is not None and report.when == "call" and report.failed and not configuration_error:
        # Collected now, while the test's namespace still exists (teardown deletes it).
        _attach_diagnostics(item, report, harness)
    return report


def _attach_verdicts(item: pytest.Item, report: pytest.TestReport) -> None:
    """Verdicts travel on the report (so the controller of an xdist run sees them) and
    become JUnit properties of the test case (junitxml writes those of the teardown report,
    which carries ``item.user_properties``)."""
    pending = item.stash.get(pending_verdicts_key, [])
    if not pending:
        return
    from pytest_canary.report import junit_properties

    expected = report.when == "call" and (report.passed or hasattr(report, "wasxfail"))
    for verdict in pending:
        if expected and not verdict.passed:
            verdict.caught = True  # pytest.raises(AssertionError) or xfail: the test wanted it
        report.user_properties.append((VERDICT_PROPERTY, verdict.to_json()))
        index = item.stash.get(verdict_count_key, 0) + 1
        item.stash[verdict_count_key] = index
        junit = report.user_properties if report.when == "teardown" else item.user_properties
        junit.extend(junit_properties(verdict, index))
    pending.clear()


def _attach_diagnostics(item: pytest.Item, report: pytest.TestReport, harness: Harness) -> None:
    try:
        diagnostics = harness.diagnostics()
        if not diagnostics.sections:
            return
        folder = None
        artifacts = _resolved(item.config, "artifacts")
        if artifacts:
            from pytest_canary.backends.artifacts import write_artifacts

            folder = write_artifacts(diagnostics, Path(artifacts), item.nodeid)
        from pytest_canary.report import failure_evidence

        report.sections.append(
            (
                "canary diagnostics",
                failure_evidence(diagnostics.sections, full_at=str(folder) if folder else None),
            )
        )
    except Exception as exc:
        report.sections.append(("canary diagnostics", f"could not collect: {exc!r}"))


class VerdictCollector:
    """Collects the verdicts carried by test reports into the session's log (in an xdist
    run, the controller receives the workers' reports). The log exists from the first
    verdict on: a run without any loads nothing of the report module."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == VERDICT_PROPERTY and isinstance(value, dict):
                from pytest_canary.report import Verdict, VerdictLog

                log = self.config.stash.setdefault(verdicts_key, VerdictLog())
                log.add(Verdict.from_json(value))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    kept = config.stash.get(kept_key, [])
    if kept:
        terminalreporter.section("canary kept namespaces")
        for namespace in kept:
            terminalreporter.write_line(namespace)
        terminalreporter.write_line(
            "delete them with: kubectl delete namespace -l pytest-canary/kept=true"
        )
    log = config.stash.get(verdicts_key, None)
    if log is None or not log.verdicts:
        return
    terminalreporter.section(f"canary verdicts (--canary-seed={config.stash[seed_key]})")
    from pytest_canary.report import SUMMARY_WIDTH

    for line in log.summary_lines(SUMMARY_WIDTH):
        terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if resolved_key not in config.stash:
        return  # the configuration failed: nothing of ours ran
    worker = hasattr(config, "workerinput")  # the controller writes records, reports, plots
    if not worker:
        _record_run(config, exitstatus)
        log = config.stash.get(verdicts_key, None)
        report = _resolved(config, "report")
        if report:
            if log is None:  # no verdict in this run: the report says so
                from pytest_canary.report import VerdictLog

                log = VerdictLog()
            log.write_json(
                Path(report),
                {"seed": config.stash.get(seed_key, None), "backend": _resolved(config, "backend")},
            )
        plots = _resolved(config, "plots")
        if plots and log is not None:
            from pytest_canary.plots import plot_file_name, plot_health, plot_verdict

            for index, verdict in enumerate(log.verdicts):
                if verdict.kind == "health":
                    plot_health(verdict, Path(plots) / plot_file_name(verdict, index))
                elif verdict.history:
                    plot_verdict(verdict, Path(plots) / plot_file_name(verdict, index))
    # Backstop for interrupted runs: whatever a fixture could not stop is stopped here.
    backend = config.stash.get(backend_key, None)
    if backend is not None:
        try:
            backend.close()
        except BackendError as exc:  # leftovers the user must clean up: said, not a traceback
            _close_failed(session, backend, exc)
        finally:
            config.stash[kept_key] = list(getattr(backend, "kept", []))
            del config.stash[backend_key]


def _close_failed(session: pytest.Session, backend: Backend, exc: BackendError) -> None:
    """Closing the backend failed (a namespace or cluster left behind): one error line on
    the terminal, and the session fails."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    line = f"canary: closing the {backend.name} backend failed: {exc}"
    if reporter is not None:
        reporter.write_line(line, red=True, bold=True)
    else:
        import sys

        sys.stderr.write(line + "\n")
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _record_run(config: pytest.Config, exitstatus: int) -> None:
    """This run's seed and outcome, for a later ``--canary-seed=last``."""
    folder = _runs_folder(config)
    if folder is None or seed_key not in config.stash:
        return
    from pytest_canary.runs import RunRecord, record_run

    failed = exitstatus in (pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.INTERRUPTED)
    record_run(folder, RunRecord(config.stash[seed_key], failed, time.time(), os.getpid()))
