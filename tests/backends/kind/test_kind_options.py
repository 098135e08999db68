"""Options of the kind backend, from the values the plugin resolved."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from pytest_canary.backends.kind.options import (
    KindOptions,
    cluster_options,
    parse_keep_cluster,
)
from pytest_canary.backends.kube.options import KubeOptions
from pytest_canary.errors import CanaryConfigError


def test_cluster_options_from_resolved_values() -> None:
    values = {
        "kube_context": ("command line --kube-context", "staging"),
        "canary_entry_url": ("ini canary_entry_url", ["http://10.0.0.5", "istio=http://10.0.0.6"]),
        "canary_keep": ("command line --canary-keep", "always"),
        "canary_wait_timeout": ("environment PYTEST_CANARY_WAIT_TIMEOUT", "30"),
        "canary_gateway": ("ini canary_gateway", "istio-ingress/public"),
    }
    kube = cluster_options("kube", values)
    assert kube == KubeOptions(
        context="staging",
        context_explicit=True,
        entry_urls={"*": "http://10.0.0.5", "istio": "http://10.0.0.6"},
        gateway="istio-ingress/public",
        keep="always",
        wait_timeout=30.0,
    )
    kind_options = cluster_options(
        "kind",
        {
            "canary_addons": ("command line --canary-addons", "istio,ingress-nginx"),
            "canary_keep_cluster": ("ini canary_keep_cluster", True),
            "canary_kind_http_port": ("command line --canary-kind-http-port", "8080"),
        },
    )
    assert isinstance(kind_options, KindOptions)
    assert kind_options.addons == ("ingress-nginx", "istio")
    assert kind_options.keep_cluster == "always" and kind_options.http_port == 8080
    assert pickle.loads(pickle.dumps(kind_options)) == kind_options


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("canary_wait_timeout", "soon", "canary_wait_timeout='soon': must be a number of seconds"),
        ("canary_kind_http_port", "99999", "must be a TCP port from 1 to 65535"),
        ("canary_addons", "linkerd", "unknown linkerd"),
        ("canary_kind_cluster", "My_Cluster", "lowercase letters, digits and '-'"),
        ("canary_gateway", "public", "must be NAMESPACE/NAME"),
    ],
)
def test_bad_option_values_name_the_value_and_where_it_came_from(
    name: str, raw: str, message: str
) -> None:
    with pytest.raises(CanaryConfigError, match=message) as caught:
        cluster_options("kind", {name: ("ini canary_x", raw)})
    assert str(caught.value).endswith("(from ini canary_x)")


def test_keep_cluster_is_a_policy_whose_default_keeps_a_failed_setup() -> None:
    assert KindOptions().keep_cluster == "failed"
    assert parse_keep_cluster(True) == "always"  # the bare flag, pytest-kind's --keep-cluster
    assert parse_keep_cluster("never") == "never"
    assert parse_keep_cluster("false") == "failed"
    with pytest.raises(CanaryConfigError, match="must be one of never, failed, always"):
        parse_keep_cluster("sometimes")


def test_the_kubeconfig_option_names_where_kinds_kubeconfig_goes(tmp_path: Path) -> None:
    kind_bin = tmp_path / "kind"
    kind_bin.write_text("#!/bin/sh\n")
    kind_bin.chmod(0o755)
    values = {
        "canary_kubeconfig": ("command line --kubeconfig", str(tmp_path / "kc")),
        "canary_kind_bin": ("command line --kind-bin", str(kind_bin)),
    }
    options = cluster_options("kind", values)
    assert isinstance(options, KindOptions)
    assert options.kubeconfig == str(tmp_path / "kc") and options.kind_path == str(kind_bin)
    assert options.kube.kubeconfig is None  # the cluster's own, not a kube backend's file
    kube = cluster_options("kube", values)
    assert isinstance(kube, KubeOptions) and kube.kubeconfig == str(tmp_path / "kc")
    with pytest.raises(CanaryConfigError, match=r"not an executable file \(from ini x\)"):
        cluster_options("kind", {"canary_kubectl_bin": ("ini x", str(tmp_path / "nope"))})


# -- through pytest: pytest-kind's options are ours -----------------------------------------------


def kind_options_of(pytester: pytest.Pytester, *args: str) -> KindOptions:
    from pytest_canary.plugin import cluster_options_key

    config = pytester.parseconfigure("--canary-backend=kind", *args)
    options = config.stash[cluster_options_key]
    assert isinstance(options, KindOptions)
    return options


def test_pytest_kinds_options_mean_ours_on_the_kind_backend(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    kind_bin = tmp_path / "kind"
    kind_bin.write_text("#!/bin/sh\n")
    kind_bin.chmod(0o755)
    options = kind_options_of(
        pytester,
        "--keep-cluster",
        "--cluster-name=shop-e2e",
        "--kind-image=kindest/node:v1.34.3",
        f"--kind-bin={kind_bin}",
        f"--kubeconfig={tmp_path / 'kc'}",
    )
    assert options.keep_cluster == "always"
    assert options.cluster == "shop-e2e"
    assert options.node_image == "kindest/node:v1.34.3"
    assert options.kind_path == str(kind_bin)
    assert options.kubeconfig == str(tmp_path / "kc")


def test_pytest_kinds_default_cluster_name_counts_only_when_given(
    pytester: pytest.Pytester,
) -> None:
    assert kind_options_of(pytester).cluster == "pytest-canary"
    assert kind_options_of(pytester, "--cluster-name=pytest-kind").cluster == "pytest-kind"


def test_the_same_setting_twice_with_different_values_is_refused(
    pytester: pytest.Pytester,
) -> None:
    with pytest.raises(pytest.UsageError) as caught:
        kind_options_of(pytester, "--cluster-name=a", "--canary-kind-cluster=b")
    assert "--cluster-name='a' (pytest-kind) and --canary-kind-cluster='b'" in str(caught.value)
    assert kind_options_of(pytester, "--keep-cluster", "--canary-keep-cluster").keep_cluster == (
        "always"
    )


def test_pytest_kinds_options_are_in_help_with_their_meaning(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    for line in (
        "*--canary-keep-cluster=*always|failed|never*",
        "*kind's --keep-cluster means always.",
        "*pytest-kind's --cluster-name means the",
        "*--canary-any-kubernetes-version*",
        "*--keep-cluster*Keep the Kubernetes kind cluster*",
    ):
        result.stdout.fnmatch_lines([line])


def test_keeping_namespaces_in_a_cluster_that_is_never_kept_is_refused() -> None:
    with pytest.raises(CanaryConfigError) as caught:
        cluster_options(
            "kind",
            {
                "canary_keep": ("command line --canary-keep", "failed"),
                "canary_keep_cluster": ("ini canary_keep_cluster", "never"),
            },
        )
    assert str(caught.value).startswith(
        "--canary-keep=failed (command line --canary-keep) keeps test namespaces in the kind "
        "cluster, but --canary-keep-cluster=never (ini canary_keep_cluster) deletes that cluster"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("false", False), ("0", False), ("no", False), ("true", True), (True, True)],
)
def test_a_yes_no_option_from_the_environment_reads_like_an_ini_bool(
    raw: object, expected: bool
) -> None:
    """PYTEST_CANARY_ANY_KUBERNETES_VERSION=false keeps the version check on."""
    env = "environment PYTEST_CANARY_ANY_KUBERNETES_VERSION"
    options = cluster_options("kube", {"canary_any_kubernetes_version": (env, raw)})
    assert isinstance(options, KubeOptions)
    assert options.any_kubernetes_version is expected


def test_a_yes_no_option_that_is_neither_is_refused_naming_its_origin() -> None:
    env = "environment PYTEST_CANARY_ANY_KUBERNETES_VERSION"
    with pytest.raises(CanaryConfigError) as caught:
        cluster_options("kube", {"canary_any_kubernetes_version": (env, "sometimes")})
    assert str(caught.value) == (
        "any Kubernetes version='sometimes': must be true or false (y, yes, t, true, on, 1 / "
        f"n, no, f, false, off, 0) (from {env})"
    )


def test_the_plugin_reads_a_false_environment_value_as_false(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_canary.plugin import cluster_options_key

    monkeypatch.setenv("PYTEST_CANARY_ANY_KUBERNETES_VERSION", "false")
    config = pytester.parseconfigure("--canary-backend=kube")
    assert config.stash[cluster_options_key].any_kubernetes_version is False
    monkeypatch.setenv("PYTEST_CANARY_ANY_KUBERNETES_VERSION", "true")
    config = pytester.parseconfigure("--canary-backend=kube")
    assert config.stash[cluster_options_key].any_kubernetes_version is True


def test_on_the_kube_backend_pytest_kinds_kubeconfig_is_ours_and_the_rest_stay_its_own(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """As the README says: --kubeconfig names the cluster to test on kube too; --cluster-name
    and the others are left to pytest-kind's own fixture there."""
    from pytest_canary.plugin import cluster_options_key

    config = pytester.parseconfigure(
        "--canary-backend=kube", f"--kubeconfig={tmp_path / 'kc'}", "--cluster-name=other"
    )
    options = config.stash[cluster_options_key]
    assert isinstance(options, KubeOptions)
    assert options.kubeconfig == str(tmp_path / "kc")
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    assert "With `--canary-backend=kube`, `--kubeconfig` means\n`--canary-kubeconfig` too" in readme


def test_the_fixtures_name_source_files_that_exist() -> None:
    """Comments in fixtures/ point readers at the code that reads them."""
    import re

    root = Path(__file__).parents[3]
    for fixture in (root / "fixtures").glob("*.yaml"):
        for path in re.findall(r"pytest_canary/[\w/]+\.py", fixture.read_text()):
            assert (root / path).is_file(), f"{fixture.name} names {path}, which does not exist"
