"""CPU and wall time to start local-backend pods: ``Popen`` of the app vs the fork server.

Run from the repository root (no Docker, ~20 s):

    python benchmarks/pod_start.py               # 20 pods per mode, 5 nginx deploys
    python benchmarks/pod_start.py --pods 40 --deploys 10

"CPU per pod" is the CPU of this process and of every process it waited for (the pods, reaped
here or by the fork server, which is itself reaped at the end) from a pod's start until it has
been stopped again, divided by the pods started; the fork server's own start (its interpreter
and the app's imports, once per pytest process) is counted in its mode's rows. The deploy
row is an nginx stable + canary deploy end to end (apply, readiness, router) and its teardown.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections.abc import Callable

from pytest_canary import build_spec
from pytest_canary.backends.local import LocalBackend, fork_server
from pytest_canary.backends.local.cluster import LocalEnvironment
from pytest_canary.backends.local.runtime import PodSpec, ProcessRuntime, stop_pods
from pytest_canary.manifests import Phase, render


def cpu() -> float:
    """CPU seconds of this process and of its reaped descendants."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measured(run: Callable[[], None]) -> tuple[float, float]:
    """(CPU s, wall s) of ``run``; the fork server is stopped after it so its CPU and its
    pods' CPU are reaped into this process's children's usage."""
    cpu0, wall0 = cpu(), time.perf_counter()
    run()
    wall = time.perf_counter() - wall0
    if (server := fork_server.current()) is not None:
        server.close()  # the next fork-server row starts (and counts) its own
    return cpu() - cpu0, wall


def start_pods(fork: bool, count: int) -> Callable[[], None]:
    def run() -> None:
        runtime = ProcessRuntime(fork=fork)
        try:
            specs = [
                PodSpec(
                    f"bench-{i}",
                    {"app": "bench"},
                    "pytest-canary/sample-nginx:1.0",
                    {"APP_VERSION": "1.0"},
                    80,
                )
                for i in range(count)
            ]
            pods = [runtime.start(spec) for spec in specs]
            stop_pods(pods, grace=5.0)
        finally:
            runtime.close()

    return run


def deploys(fork: bool, count: int) -> Callable[[], None]:
    def run() -> None:
        backend = LocalBackend(seed=1, runtime=ProcessRuntime(fork=fork))
        try:
            for i in range(count):
                env = backend.environment(f"bench-{fork}-{i}")
                assert isinstance(env, LocalEnvironment)
                env.apply(render(build_spec("nginx", stable="1.0", canary="2.0"), Phase.CANARY))
                env.close()
        finally:
            backend.close()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--deploys", type=int, default=5)
    args = parser.parse_args()
    print(f"| start | pods | CPU per pod | wall per pod |  (pid {os.getpid()})")
    print("|---|---|---|---|")
    for fork, label in ((False, "Popen"), (True, "fork server")):
        used, wall = measured(start_pods(fork, args.pods))
        print(
            f"| {label} | {args.pods} | {used / args.pods * 1000:.0f} ms "
            f"| {wall / args.pods * 1000:.0f} ms |"
        )
    print()
    print("| start | nginx deploys (2 pods) + close | CPU per deploy | wall per deploy |")
    print("|---|---|---|---|")
    for fork, label in ((False, "Popen"), (True, "fork server")):
        used, wall = measured(deploys(fork, args.deploys))
        print(
            f"| {label} | {args.deploys} | {used / args.deploys * 1000:.0f} ms "
            f"| {wall / args.deploys * 1000:.0f} ms |"
        )
    if fork_server.failure() is not None:
        print(f"fork server unavailable: {fork_server.failure()}")


if __name__ == "__main__":
    main()
