"""Options of the kube backend: the context guard and the parsers the plugin feeds."""

from __future__ import annotations

import pytest

from pytest_canary.backends.kube.entry import EntryPoints
from pytest_canary.backends.kube.options import check_context, parse_entry_urls, parse_keep
from pytest_canary.errors import BackendError, CanaryConfigError


@pytest.mark.parametrize("context", ["kind-pytest-canary", "minikube", "docker-desktop", "k3d-dev"])
def test_test_cluster_contexts_are_accepted(context: str) -> None:
    check_context(context, explicit=False)


def test_other_contexts_need_kube_context_and_the_message_says_so() -> None:
    with pytest.raises(CanaryConfigError, match=r"Pass --kube-context=prod-eu to confirm"):
        check_context("prod-eu", explicit=False)
    check_context("prod-eu", explicit=True)


def test_entry_urls_parse_per_strategy_and_reject_garbage() -> None:
    assert parse_entry_urls(["http://10.0.0.5/", "istio=https://gw.example:8443"]) == {
        "*": "http://10.0.0.5",
        "istio": "https://gw.example:8443",
    }
    with pytest.raises(CanaryConfigError, match="'nginks' is not a strategy"):
        parse_entry_urls(["nginks=http://x"])
    with pytest.raises(CanaryConfigError, match=r"must be \[STRATEGY=\]http"):
        parse_entry_urls(["10.0.0.5"])
    assert EntryPoints(urls={"*": "http://a"}).url_for("istio") == "http://a"
    with pytest.raises(BackendError, match="--canary-entry-url=nginx="):
        EntryPoints().url_for("nginx")


def test_keep_policy_values() -> None:
    assert parse_keep("Failed") == "failed"
    assert parse_keep("true") == "always"
    with pytest.raises(CanaryConfigError, match="never, failed, always"):
        parse_keep("sometimes")
