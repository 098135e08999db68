"""pytest wiring of pytest-canary: options, ini keys, the marker, fixtures, header and summary.

No logic lives here that a script could not call without pytest: see ``harness``,
``backends`` and ``config``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_canary import config as settings_table
from pytest_canary.backends.base import Backend
from pytest_canary.errors import BackendError, CanaryConfigError
from pytest_canary.harness import Harness, Settings
from pytest_canary.plots import plot_file_name, plot_verdict, require_matplotlib
from pytest_canary.report import Verdict, VerdictLog

BACKENDS = ("local", "kind", "kube")
SEED_CACHE_KEY = "canary/seed"
RUNTIMES = ("process", "docker")
RUNTIME_HELP = (
    "How the local backend runs pods: process (default; the Python sample app as local "
    "processes) or docker (a container of each version's image, published on 127.0.0.1; "
    "sample images are built on demand, nothing is pulled)."
)

backend_key = pytest.StashKey[Backend]()
verdicts_key = pytest.StashKey[VerdictLog]()
pending_verdicts_key = pytest.StashKey[list[Verdict]]()
VERDICT_PROPERTY = "canary_verdict"
seed_key = pytest.StashKey[int]()
harness_key = pytest.StashKey[Harness]()
swept_key = pytest.StashKey[list[str]]()
cluster_options_key = pytest.StashKey[Any]()  # KubeOptions or KindOptions
run_id_key = pytest.StashKey[str]()
kept_key = pytest.StashKey[list[str]]()

# Options of the kind and kube backends: (flag, ini key or None, metavar, help, action).
# One help text for the flag and its ini key; values resolve CLI > PYTEST_CANARY_* > ini.
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
        "Deadline of each wait for workloads, endpoints and ingress admission (default 180).",
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
        "all three) or none.",
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


def _backend_name(raw: str) -> str:
    if raw not in BACKENDS:
        raise pytest.UsageError(f"--canary-backend={raw}: must be one of {', '.join(BACKENDS)}")
    return raw


def _runtime_flag(raw: str) -> str:
    if raw not in RUNTIMES:
        raise pytest.UsageError(f"--canary-runtime={raw}: must be one of {', '.join(RUNTIMES)}")
    return raw


def _seed(raw: str) -> str:
    if raw != "last" and not raw.lstrip("-").isdigit():
        raise pytest.UsageError(f"--canary-seed={raw}: must be an integer or 'last'")
    return raw


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("canary", "canary releases (pytest-canary)")
    group.addoption(
        "--canary-backend",
        type=_backend_name,
        default=None,
        help="Where releases run: local (default; processes and a local router on 127.0.0.1), "
        "kind or kube.",
    )
    parser.addini("canary_backend", "Default of --canary-backend.", default="local")
    group.addoption("--canary-runtime", type=_runtime_flag, default=None, help=RUNTIME_HELP)
    parser.addini("canary_runtime", RUNTIME_HELP, default=None)
    group.addoption(
        "--canary-seed",
        type=_seed,
        default=None,
        help="Seed of the local backend's routing decisions, to repeat a run exactly; "
        "'last' reuses the previous run's seed.",
    )
    group.addoption(
        "--canary-report",
        default=None,
        metavar="PATH",
        help="Write every canary verdict of the session to this JSON file.",
    )
    group.addoption(
        "--canary-plots",
        default=None,
        metavar="DIR",
        help="Write one PNG per expect_split into DIR: the confidence sequence narrowing over "
        "the requests, against the accepted band (needs matplotlib).",
    )
    for setting in settings_table.SETTINGS:
        group.addoption(setting.flag, default=None, help=setting.help)
        parser.addini(setting.ini, setting.help, default=None)
    _add_cluster_options(group, parser)


def _add_cluster_options(group: Any, parser: pytest.Parser) -> None:
    for flag, ini, metavar, text, action in CLUSTER_OPTIONS:
        if action == "store_true":
            group.addoption(flag, action="store_true", default=None, help=text)
        elif action == "keep":
            group.addoption(
                flag, nargs="?", const="always", default=None, metavar=metavar, help=text
            )
        else:
            group.addoption(flag, action=action, default=None, metavar=metavar, help=text)
        if ini is None:
            continue
        if action == "store_true":
            parser.addini(ini, text, type="bool", default=None)
        elif action == "append":
            parser.addini(ini, text, type="linelist", default=None)
        else:
            parser.addini(ini, text, default=None)


@pytest.hookimpl(trylast=True)  # after the cache provider
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "canary(alpha=None, tolerance=None, leak=None, max_requests=None, concurrency=None, "
        "timeout=None): statistical and traffic settings of pytest-canary for this test.",
    )
    config.stash[verdicts_key] = VerdictLog()
    config.pluginmanager.register(VerdictCollector(config.stash[verdicts_key]), "canary-verdicts")
    if config.getoption("canary_plots"):
        try:
            require_matplotlib()
        except CanaryConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
    config.stash[seed_key] = _resolve_seed(config)
    # Validate settings early so a typo fails the run once, not every test.
    try:
        _resolve_settings(config, None)
    except CanaryConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    name = _chosen_backend(config)
    if name != "local":
        from pytest_canary.backends.kind import cluster_options, new_run_id

        workerinput = getattr(config, "workerinput", {})
        config.stash[run_id_key] = workerinput.get("canary_run_id") or new_run_id()
        try:
            config.stash[cluster_options_key] = cluster_options(name, _cluster_values(config))
        except CanaryConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
    _chosen_runtime(config)


def _cluster_values(config: pytest.Config) -> dict[str, tuple[str, Any]]:
    """Each cluster option's value and where it came from: CLI > PYTEST_CANARY_* > ini."""
    values: dict[str, tuple[str, Any]] = {}
    for flag, ini, _, _, action in CLUSTER_OPTIONS:
        name = flag.lstrip("-").replace("-", "_")
        env = "PYTEST_CANARY_" + name.removeprefix("canary_").upper()
        cli = config.getoption(name)
        if cli is not None:
            values[name] = (f"command line {flag}", cli)
        elif os.environ.get(env):
            raw = os.environ[env]
            values[name] = (f"environment {env}", raw.split() if action == "append" else raw)
        elif ini is not None and config.getini(ini) not in (None, [], ""):
            values[name] = (f"ini {ini}", config.getini(ini))
    backend = _chosen_backend(config)
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


def _given(config: pytest.Config, flag: str) -> bool:
    """Whether ``flag`` is on the command line (or in addopts), even at its default value."""
    import shlex

    args = [str(a) for a in config.invocation_params.args]
    args += shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))
    args += [str(a) for a in config.getini("addopts") or []]
    return any(a == flag or a.startswith(flag + "=") for a in args)


def _chosen_runtime(config: pytest.Config) -> str:
    """The local backend's runtime: CLI > ``PYTEST_CANARY_RUNTIME`` > ini > process."""
    for origin, value in (
        ("command line --canary-runtime", config.getoption("canary_runtime")),
        ("environment PYTEST_CANARY_RUNTIME", os.environ.get("PYTEST_CANARY_RUNTIME")),
        ("ini canary_runtime", config.getini("canary_runtime")),
    ):
        if value:
            if value not in RUNTIMES:
                raise pytest.UsageError(
                    f"runtime {value!r} from {origin}: must be one of {', '.join(RUNTIMES)}"
                )
            return str(value)
    return "process"


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if (
        _chosen_backend(config) == "kind"
        and config.pluginmanager.has_plugin("dsession")  # the xdist controller
        and backend_key not in config.stash
    ):
        # One cluster for all workers: created here, handed over in pytest_configure_node.
        config.stash[backend_key] = _make_backend(config)
    if _chosen_backend(config) != "local" or _chosen_runtime(config) != "docker":
        return
    from pytest_canary.backends.local.docker_runtime import sweep_dead_runs
    from pytest_canary.images import connect

    try:
        client = connect()
    except BackendError as exc:
        raise pytest.UsageError(f"--canary-runtime=docker: {exc}") from None
    try:
        # Containers of runs whose pytest was killed (no teardown ran): removed before we start.
        config.stash[swept_key] = sweep_dead_runs(client)
    finally:
        client.close()


def _chosen_backend(config: pytest.Config) -> str:
    name = config.getoption("canary_backend") or os.environ.get("PYTEST_CANARY_BACKEND")
    name = name or str(config.getini("canary_backend") or "local")
    return _backend_name(name)


def _resolve_seed(config: pytest.Config) -> int:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and "canary_seed" in workerinput:
        # An xdist worker: the controller resolved (and recorded) the seed for everyone.
        return int(workerinput["canary_seed"])
    raw = config.getoption("canary_seed") or os.environ.get("PYTEST_CANARY_SEED")
    cache = getattr(config, "cache", None)  # absent with -p no:cacheprovider
    if raw == "last":
        last = cache.get(SEED_CACHE_KEY, None) if cache is not None else None
        if last is None:
            raise pytest.UsageError("--canary-seed=last: no previous run recorded a seed")
        seed = int(last)
    elif raw is not None:
        seed = int(_seed(raw))
    else:
        seed = random.randrange(10**9)
    if cache is not None:
        cache.set(SEED_CACHE_KEY, seed)
    return seed


def _resolve_settings(config: pytest.Config, node: pytest.Item | None) -> Settings:
    marker: dict[str, Any] = {}
    if node is not None:
        for mark in reversed(list(node.iter_markers("canary"))):
            marker.update(mark.kwargs)
    unknown = set(marker) - set(settings_table.BY_NAME)
    if unknown:
        raise CanaryConfigError(
            f"@pytest.mark.canary({', '.join(sorted(unknown))}=...): unknown setting; known: "
            f"{', '.join(settings_table.BY_NAME)}"
        )
    cli = {
        s.name: config.getoption(s.flag.lstrip("-").replace("-", "_"))
        for s in settings_table.SETTINGS
    }
    env = {s.name: os.environ.get(s.env) for s in settings_table.SETTINGS}
    ini = {s.name: config.getini(s.ini) for s in settings_table.SETTINGS}
    values = settings_table.resolve(
        [
            ("@pytest.mark.canary({name}=...)", marker),
            ("command line {flag}", cli),
            ("environment {env}", env),
            ("ini {ini}", ini),
        ]
    )
    return Settings(**values)


def pytest_report_header(config: pytest.Config) -> list[str]:
    name = _chosen_backend(config)
    settings = _resolve_settings(config, None)
    if name == "local":
        from pytest_canary.backends.local import MODELS
        from pytest_canary.backends.local import RUNTIMES as RUNTIMES_TEXT

        runtime = _chosen_runtime(config)
        what = f"local backend modelling {MODELS}; pods as {RUNTIMES_TEXT[runtime]} " + (
            f"(--canary-runtime={runtime})"
        )
    else:
        options = config.stash[cluster_options_key]
        what = (
            f"{name} backend ({options.describe()})"
            if hasattr(options, "describe")
            else (f"{name} backend")
        )
    lines = [
        f"canary: {what}",
        f"canary: --canary-seed={config.stash[seed_key]} alpha={settings.alpha:g} "
        f"tolerance={settings.tolerance:g}",
    ]
    swept = config.stash.get(swept_key, [])
    if swept:
        lines.append(f"canary: removed {len(swept)} container(s) left by dead runs")
    return lines


def _make_backend(config: pytest.Config) -> Backend:
    name = _chosen_backend(config)
    if name == "local":
        from pytest_canary.backends.local import LocalBackend, make_runtime

        runtime = _chosen_runtime(config)
        # The session start already swept leftovers of dead runs.
        options: dict[str, Any] = {"sweep": False} if runtime == "docker" else {}
        return LocalBackend(seed=config.stash[seed_key], runtime=make_runtime(runtime, **options))
    from pytest_canary.backends.kind import make_cluster_backend

    workerinput = getattr(config, "workerinput", {})
    try:
        return make_cluster_backend(
            config.stash[cluster_options_key],
            run_id=config.stash[run_id_key],
            handoff=workerinput.get("canary_cluster"),
            progress=_progress(config),
        )
    except (BackendError, CanaryConfigError) as exc:
        # One clear error for the session instead of the same error in every test.
        pytest.exit(f"canary: the {name} backend could not start: {exc}", returncode=3)


def _progress(config: pytest.Config) -> Any:
    """Progress lines of long steps (cluster, add-ons, images) on the terminal."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def show(message: str) -> None:
        if reporter is not None:
            reporter.write_line(f"canary: {message}")
        else:
            import sys

            print(f"canary: {message}", file=sys.stderr)

    return show


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
        return _resolve_settings(request.config, request.node)
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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # Verdicts travel on the report, so the controller of an xdist run sees them too.
    pending = item.stash.get(pending_verdicts_key, [])
    for verdict in pending:
        report.user_properties.append((VERDICT_PROPERTY, verdict.to_json()))
    pending.clear()
    harness = item.stash.get(harness_key, None)
    if harness is not None and report.when in ("setup", "call") and report.failed:
        record_failure = getattr(harness.environment, "record_failure", None)
        if record_failure is not None:
            record_failure()  # --canary-keep=failed
    if harness is not None and report.when == "call" and report.failed:
        # Collected now, while the test's namespace still exists (teardown deletes it).
        try:
            diagnostics = harness.diagnostics()
            report.sections.append(("canary diagnostics", diagnostics.render()))
            artifacts = _cluster_values(item.config).get("canary_artifacts", ("", None))[1]
            if artifacts:
                from pytest_canary.backends.artifacts import write_artifacts

                folder = write_artifacts(diagnostics, Path(artifacts), item.nodeid)
                report.sections.append(("canary artifacts", str(folder)))
        except Exception as exc:
            report.sections.append(("canary diagnostics", f"could not collect: {exc!r}"))
    return report


class VerdictCollector:
    """Collects the verdicts carried by test reports into the session's log (in an xdist
    run, the controller receives the workers' reports)."""

    def __init__(self, log: VerdictLog) -> None:
        self.log = log

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == VERDICT_PROPERTY and isinstance(value, dict):
                self.log.add(Verdict.from_json(value))


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
    terminalreporter.section("canary verdicts")
    for line in log.summary_lines():
        terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    report = config.getoption("canary_report")
    log = config.stash.get(verdicts_key, None)
    if hasattr(config, "workerinput"):
        log = None  # an xdist worker: the controller writes reports and plots
    if report and log is not None:
        log.write_json(
            Path(report),
            {"seed": config.stash.get(seed_key, None), "backend": _chosen_backend(config)},
        )
    plots = config.getoption("canary_plots")
    if plots and log is not None:
        for index, verdict in enumerate(log.verdicts):
            if verdict.history:
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
