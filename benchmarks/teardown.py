"""Teardown of a local environment whose pods do not answer SIGTERM (SIGSTOPped).

Run from the repository root (no Docker, a few seconds per row):

    python benchmarks/teardown.py                # 2, 4 and 8 pods
    python benchmarks/teardown.py --pods 12

Each row deploys an nginx release (stable + canary Deployments, ``replicas`` each), stops
every pod with SIGSTOP (a hung process: SIGTERM waits, only SIGKILL ends it) and times
``LocalEnvironment.close()``. Pods are stopped together (``runtime.stop_pods``): one grace
period of 2 s in all, where stopping them one after another took 2 s per pod.
"""

from __future__ import annotations

import argparse
import os
import signal
import time

from pytest_canary import build_spec
from pytest_canary.backends.local import LocalBackend
from pytest_canary.backends.local.cluster import LocalEnvironment
from pytest_canary.backends.local.runtime import ProcessHandle
from pytest_canary.manifests import Phase, render


def measure(pods: int) -> float:
    backend = LocalBackend(seed=1)
    try:
        env = backend.environment(f"teardown-{pods}")
        assert isinstance(env, LocalEnvironment)
        spec = build_spec("nginx", stable="1.0", canary="2.0", replicas=max(1, pods // 2))
        env.apply(render(spec, Phase.CANARY))
        for pod in env.pods:
            assert isinstance(pod.stopper, ProcessHandle)
            os.kill(pod.stopper.process.pid, signal.SIGSTOP)
        started = time.perf_counter()
        env.close()
        return time.perf_counter() - started
    finally:
        backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, nargs="*", default=[2, 4, 8])
    args = parser.parse_args()
    print("| stopped pods | close() |")
    print("|---|---|")
    for pods in args.pods:
        print(f"| {pods} | {measure(pods):.2f} s |")


if __name__ == "__main__":
    main()
