"""The Argo Rollouts suite on a cluster without the controller: every test skips, saying
why and how to install it (through the plugin, on the API emulator without the CRD)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ApiServer, FakeIngress

SUITE = Path(__file__).resolve().parents[3] / "suites" / "test_argo_rollouts.py"


def test_the_suite_skips_on_a_cluster_without_argo_rollouts_saying_how_to_install_it(
    pytester: pytest.Pytester,
    api_server: ApiServer,
    fake_ingress: FakeIngress,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PYTEST_CANARY_CACHE_DIR", str(tmp_path / "cache"))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        f"""
apiVersion: v1
kind: Config
clusters: [{{name: emu, cluster: {{server: "{api_server.url}"}}}}]
users: [{{name: emu, user: {{token: t}}}}]
contexts: [{{name: kind-emu, context: {{cluster: emu, user: emu}}}}]
current-context: kind-emu
"""
    )
    # Another module name than the suite's: in a worker that already imported
    # suites/test_argo_rollouts.py, the same name would be another file.
    pytester.makepyfile(test_suite_copy=SUITE.read_text())
    result = pytester.runpytest(
        "--canary-backend=kube",
        f"--canary-kubeconfig={kubeconfig}",
        f"--canary-entry-url={fake_ingress.url}",
        "-rs",
        "-p",
        "no:randomly",
    )
    result.assert_outcomes(skipped=10)
    reason = (
        "Argo Rollouts: the cluster does not serve rollouts.argoproj.io: install the Argo "
        "Rollouts controller (v1.9.1, the version the model follows): kubectl create namespace "
        "argo-rollouts && kubectl apply --server-side -n argo-rollouts -f https://github.com/"
        "argoproj/argo-rollouts/releases/download/v1.9.1/install.yaml -- or run on kind "
        "(--canary-backend=kind), which installs it when a test needs it"
    )
    skipped = [line for line in result.outlines if line.startswith("SKIPPED [1] ")]
    assert len(skipped) == 10 and all(line.endswith(f": {reason}") for line in skipped)
    assert not [c for c in api_server.calls if c.method == "PATCH" and "rollouts" in c.path]
