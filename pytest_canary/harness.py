"""What a test holds: a :class:`Harness` (the ``canary`` fixture) and the :class:`Release`
handles it deploys. Usable without pytest:

Example:
    >>> backend = LocalBackend(seed=1)                       # doctest: +SKIP
    >>> with Harness(backend.environment("demo")) as canary:  # doctest: +SKIP
    ...     rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=20)
    ...     rel.expect_split(0.20)
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
import time
import warnings
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeVar, overload
from urllib.parse import quote

from pytest_canary import analysis, byo, lint, manifests, stats
from pytest_canary.apps import VERSION_READERS, VersionFromHeader, VersionReader
from pytest_canary.backends.base import Diagnostics, Environment
from pytest_canary.config import Settings
from pytest_canary.errors import CanaryConfigError
from pytest_canary.manifests import Manifest, Phase
from pytest_canary.report import CanaryAssertionError, Verdict
from pytest_canary.spec import ReleaseSpec, build_spec, check_path, check_request
from pytest_canary.traffic import BackgroundTraffic, Entry, Sample, Sampler, relay_classifier

if TYPE_CHECKING:
    from pytest_canary.rollout_release import RolloutRelease


@dataclass
class Harness:
    """Deploys releases into one environment and cleans them up.

    Args:
        environment: the test's isolated place on a backend.
        settings: defaults for every expectation.
        on_verdict: called with every verdict (the plugin records them for its summary).
        test_name: shown in verdicts.
    """

    environment: Environment
    settings: Settings = field(default_factory=Settings)
    on_verdict: Callable[[Verdict], None] | None = None
    test_name: str = ""
    releases: list[Release] = field(default_factory=list)
    applied: list[AppliedManifests] = field(default_factory=list)

    @overload
    def deploy(
        self, strategy: Literal["rollouts"], stable: str, canary: str, **routing: Any
    ) -> RolloutRelease: ...

    @overload
    def deploy(self, strategy: str, stable: str, canary: str, **routing: Any) -> Release: ...

    def deploy(self, strategy: str, stable: str, canary: str, **routing: Any) -> Release:
        """Deploy a stable and a canary version with ``strategy`` and return its handle
        (for ``"rollouts"`` a :class:`~pytest_canary.rollout_release.RolloutRelease`).

        Raises:
            CanaryConfigError: for any invalid argument, before anything is deployed.
        """
        spec = build_spec(strategy, stable, canary, **routing)
        for other in self.releases:
            if other.spec.name == spec.name:
                raise CanaryConfigError(
                    f"name={spec.name!r}: a release of that name is already deployed in this "
                    "test; pass name=... to deploy another one"
                )
        if self.applied:
            raise CanaryConfigError(
                f"deploy({strategy!r}, ...): this test already applied your own manifests "
                "with canary.apply(); use one or the other in a test"
            )
        release = _release_class(strategy)(self, spec)
        self.releases.append(release)
        release._apply(Phase.CANARY)
        return release

    def apply(
        self,
        paths: byo.PathsArg,
        *,
        host: str | None = None,
        version_label: str = "version",
        findings: Literal["error", "warn", "ignore"] = "error",
        path: str | None = None,
        version_from: VersionReader | None = None,
    ) -> AppliedManifests:
        """Apply your own manifests (files, folders, a kustomize folder) and return a handle
        with the same expectations as a :class:`Release`.

        Before anything is applied the objects are schema-checked and linted
        (:func:`pytest_canary.lint.lint`): each finding names the upstream rule that makes the
        data plane drop or reject the configuration. Namespaces in the files are replaced by
        the test's. On the local backend every workload is stood in for by the sample app
        answering with its pods' ``version_label``, so the routing objects themselves are
        checked; kinds that do not affect routing (ConfigMap, HPA, ...) are left out with a
        :class:`pytest_canary.byo.ManifestWarning`. On a cluster (``kube``, ``kind``) every
        object is applied as it is, your images answer, and the call returns once traffic
        through the entry is answered only by your workloads' versions.

        Args:
            paths: a file, a folder, or a list of them.
            host: the Host header of the traffic (default: the first host of an Ingress,
                HTTPRoute or VirtualService).
            version_label: the pod label that holds each workload's version.
            findings: ``"error"`` raises on any finding, ``"warn"`` warns
                (:class:`pytest_canary.lint.FindingWarning`) and applies, ``"ignore"`` applies.
            path: the request path (default: the first path the routing objects name).
            version_from: how a response of your image says its version, a reader from
                :mod:`pytest_canary.apps` (``VersionFromHeader``, ``VersionFromJson``,
                ``VersionFromRegex``); default ``VersionFromHeader("X-App-Version")``. Not
                used on the local backend, whose stand-ins answer with ``X-App-Version``.

        Raises:
            CanaryConfigError: unreadable paths or YAML (naming file and document), objects
                the API would reject, kinds the backend cannot realise (in one error), pods
                without ``version_label``, an invalid ``version_from``, and findings when
                ``findings="error"``.

        Example:
            >>> shop = canary.apply("deploy/shop/", host="shop.example.com")  # doctest: +SKIP
            >>> shop.expect_split({"v2": 0.10})                              # doctest: +SKIP
        """
        __tracebackhide__ = True
        if findings not in ("error", "warn", "ignore"):
            raise CanaryConfigError(
                f"findings={findings!r}: must be 'error' (raise), 'warn' or 'ignore'"
            )
        if self.releases:
            raise CanaryConfigError(
                "apply(...): this test already deployed a release with canary.deploy(); use "
                "one or the other in a test"
            )
        reader = VersionFromHeader() if version_from is None else version_from
        if not isinstance(reader, VERSION_READERS):
            raise CanaryConfigError(
                f"version_from={version_from!r}: must be VersionFromHeader(name), "
                "VersionFromJson('dotted.path') or VersionFromRegex(pattern) from "
                "pytest_canary.apps"
            )
        reader.check("version_from")
        env = self.environment
        if env.stands_in_for_workloads:
            reader = VersionFromHeader()  # the sample app answers, not your image
        if path is not None:
            check_path("path", path)
        loaded = byo.load(paths)
        byo.check_schemas(loaded)
        byo.check_replicas(loaded)
        byo.check_rollout_bounds(loaded)
        objects = (
            loaded.objects
            if env.understood_kinds is None
            else byo.split_kinds(loaded, env.understood_kinds)
        )
        versions = byo.workload_versions(objects, version_label)
        found = lint.lint(objects)
        if found and findings == "error":
            origins = {
                f"{o['kind']}/{o['metadata']['name']}": origin
                for o, origin in zip(loaded.objects, loaded.origins, strict=True)
            }
            count = f"{len(found)} finding" + ("s" if len(found) != 1 else "")
            raise CanaryConfigError(
                f"{count} in {loaded.describe()}, before any traffic was sent (the data plane "
                "would drop or reject this configuration):\n"
                + lint.format_findings(found, origins)
                + "\nFix the manifests, or pass findings='warn' (or 'ignore') to apply them "
                "as they are."
            )
        if findings == "warn":
            for finding in found:
                warnings.warn(lint.FindingWarning(str(finding)), stacklevel=2)
        moved = byo.rewrite_namespace(objects, env.namespace)
        host = host if host is not None else byo.default_host(moved)
        handle = _applied_class(moved, version_label, env)(
            self,
            moved,
            versions=tuple(dict.fromkeys(versions.values())),
            canary=byo.canary_version(moved, version_label),
            path=path if path is not None else byo.default_path(moved),
            findings=found,
            version_from=reader,
        )
        for previous in self.applied:
            previous.close()
        self.applied = [handle]
        # The entry first: a backend that cannot serve these objects says so before applying.
        handle.entry = env.entry_for_objects(moved, host)
        env.apply_manifests(moved, version_label=version_label)
        env.await_manifests(
            moved,
            handle.entry,
            path=handle.path,
            version_label=version_label,
            version_from=reader,
        )
        handle._after_apply()
        return handle

    def lint(self, paths: byo.PathsArg) -> list[lint.Finding]:
        """The findings of your own manifests (see :meth:`apply`), without applying them."""
        return lint.lint_paths(paths)

    def diagnostics(self) -> Diagnostics:
        """Evidence for a failure report: rendered manifests and the backend's own."""
        diag = self.environment.diagnostics()
        for release in self.releases:
            diag.add(
                f"manifests of {release.spec.name} ({release.phase.value})",
                release.manifests_yaml(),
            )
        for handle in self.applied:
            diag.add("applied manifests (canary.apply)", handle.manifests_yaml())
        return diag

    def close(self) -> None:
        """Close samplers and the environment (deleting everything deployed)."""
        try:
            for release in self.releases:
                release.close()
            for handle in self.applied:
                handle.close()
        finally:
            self.environment.close()

    def __repr__(self) -> str:
        # Short: pytest prints it as the ``canary`` argument of a failing test.
        return (
            f"<Harness {self.test_name or 'unnamed'}: {len(self.releases)} release(s), "
            f"{len(self.applied)} applied set(s)>"
        )

    def __enter__(self) -> Harness:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_P = ParamSpec("_P")
_R = TypeVar("_R")
_Checks = TypeVar("_Checks", bound="TrafficChecks")


def _on_one_split(
    method: Callable[Concatenate[_Checks, _P], _R],
) -> Callable[Concatenate[_Checks, _P], _R]:
    """Run an expectation inside the handle's :meth:`TrafficChecks._one_split` (its requests
    must all see one traffic split); the signature and docstring stay the method's."""

    def run(self: _Checks, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        __tracebackhide__ = True
        with self._one_split():
            return method(self, *args, **kwargs)

    functools.update_wrapper(run, method)
    return run


class TrafficChecks:
    """Real traffic and verdicts on it: what every handle the harness returns offers
    (:class:`Release` from ``deploy``, :class:`AppliedManifests` from ``apply``).

    A subclass says where traffic enters (``_sampler_get``) and which versions answer.
    """

    _harness: Harness
    _samplers: dict[str | None, Sampler]

    def _sampler_get(self, source: str | None = None) -> Sampler:
        raise NotImplementedError

    def _served_versions(self) -> tuple[str, ...]:
        """Versions that answer now: an expected split names only these."""
        raise NotImplementedError

    def _known_versions(self) -> tuple[str, ...]:
        """Versions ``expect_routed`` accepts."""
        return self._served_versions()

    def _canary_and_stable(self) -> tuple[str, str] | None:
        """(canary, stable) for a share given as one number; None when there is no canary."""
        return None

    def _label(self) -> str:
        """What the verdicts name as the strategy."""
        raise NotImplementedError

    def _one_split(self) -> AbstractContextManager[None]:
        """Around each expectation: where the split can move by itself (an Argo Rollout's
        timed pause), hold it, and fail an expectation whose requests saw two splits."""
        return contextlib.nullcontext()

    def _zero_downtime(
        self,
        change: Callable[[], object],
        *,
        during: str,
        request: str,
        settle: Callable[[], object] | None = None,
    ) -> Verdict:
        """Run ``change`` under background traffic to the entry: PASS when no request failed
        while it ran (the zero-downtime check of ``check_errors=True``). ``settle`` runs once
        the traffic has stopped, before the verdict (e.g. reading the handle's new phase).

        A change that is over in a few rounds would be checked on a handful of requests: the
        traffic goes on after it until :func:`stats.routed_requests` ``(0.01, alpha)`` were
        sent in all (688 at alpha 0.001), so a failure rate of 1% or more around the change
        fails the check with probability at least ``1 - alpha``; it stops at the first failed
        request (the verdict is FAIL then). An entry that cannot carry that many requests
        within :data:`ZERO_DOWNTIME_WAIT` seconds after the change gets INCONCLUSIVE (a
        failure naming how many it answered), never a PASS without the guarantee. A change
        that raises stops the traffic at once and its error propagates."""
        __tracebackhide__ = True
        started = time.perf_counter()
        alpha = self._harness.settings.alpha
        floor = stats.routed_requests(ZERO_DOWNTIME_RATE, alpha)
        entry = self._sampler_get(None)  # the entry, path and version reader of this handle
        traffic = BackgroundTraffic(
            entry.entry,
            concurrency=entry.concurrency,  # as many in flight as the expectations send
            batch=entry.concurrency,
            timeout=self._harness.settings.timeout,
            classify=entry.classify,
            path=entry.path,
        ).start()
        try:
            change()
        except BaseException:
            traffic.stop()
            raise
        sample = traffic.stop(min_requests=floor, max_wait=ZERO_DOWNTIME_WAIT, until_error=True)
        if settle is not None:
            settle()
        where = f"during {during} and after it"
        if sample.error_count:
            decision = "FAIL"
            reason = f"{sample.error_count} of {sample.total} requests failed {where}"
        elif sample.total < floor:
            decision = "INCONCLUSIVE"
            reason = (
                f"none of {sample.total} requests failed {where}, but a check that catches a "
                f"failure rate of {ZERO_DOWNTIME_RATE * 100:g}% with probability "
                f"{1 - alpha:g} needs {floor}, and the entry answered only {sample.total} within "
                f"{ZERO_DOWNTIME_WAIT:g}s after the change (a slow entry: raise "
                "--canary-concurrency, or check the entry's latency)"
            )
        else:
            decision = "PASS"
            reason = f"{sample.total} requests {where}, none failed"
        verdict = self._verdict(
            kind="zero-downtime",
            passed=decision == "PASS",
            decision=decision,
            expected={},
            sample=sample,
            alpha=alpha,
            reason=reason,
            elapsed=time.perf_counter() - started,
            request=request,
        )
        return self._conclude(verdict)

    @_on_one_split
    def sample(
        self,
        n: int,
        *,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        source: str | None = None,
    ) -> Sample:
        """Send ``n`` requests and return raw counts, errors and latencies.

        Args:
            source: send through the frontend pods of this version, which call the release
                from inside the mesh (needs ``source=True`` at deploy).
        """
        headers, cookies = check_request(headers, cookies)
        sample = self._send(n, headers=headers, cookies=cookies, source=source)
        self._harness.environment.check_health()
        return sample

    def _send(
        self,
        n: int,
        *,
        headers: Mapping[str, str] | None,
        cookies: Mapping[str, str] | None,
        source: str | None,
    ) -> Sample:
        """``n`` requests as :meth:`sample` sends them, without the backend check."""
        headers = _relayed(headers, cookies) if source is not None else headers
        cookies = None if source is not None else cookies
        return self._sampler_get(source).sample(n, headers=headers, cookies=cookies)

    def _rounds(
        self,
        test: stats.SequentialTest,
        look: Callable[[Sample, Sample], bool],
        *,
        headers: Mapping[str, str] | None,
        cookies: Mapping[str, str] | None,
        source: str | None,
    ) -> Sample:
        """Send rounds of ``concurrency`` requests until ``test`` decides: after each round
        ``look(batch, total)`` updates the test and says whether to go on. A sequential test
        looks after every round (looks cost an anytime-valid test nothing) and stops at the
        first that decides; the backend's background errors are checked as requests grow and
        once at the end. Returns every request sent."""
        __tracebackhide__ = True
        concurrency = self._sampler_get(source).concurrency
        total = Sample()
        checks = _BackendChecks(self._harness.environment)
        while test.decision is stats.Decision.CONTINUE:
            batch = self._send(
                test.next_batch_size(concurrency), headers=headers, cookies=cookies, source=source
            )
            total.merge(batch)
            go_on = look(batch, total)
            checks.after(total.total)
            if not go_on:
                break
        checks.final()
        return total

    def _expected_shares(self, share: float | Mapping[str, float]) -> dict[str, float]:
        versions = self._served_versions()
        if isinstance(share, Mapping):
            for version, value in share.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise CanaryConfigError(
                        f"share[{version!r}]={value!r}: must be a number from 0 to 1"
                    )
            given = {str(k): float(v) for k, v in share.items()}
            unknown = [v for v in given if v not in versions]
            if unknown:
                raise CanaryConfigError(
                    f"share={dict(share)!r}: {', '.join(unknown)} not deployed; versions are "
                    f"{', '.join(versions)}"
                )
            rest = [v for v in versions if v not in given]
            remainder = 1.0 - sum(given.values())
            if len(rest) == 1:
                given[rest[0]] = remainder
            elif abs(remainder) > 1e-9:
                raise CanaryConfigError(
                    f"share={dict(share)!r}: shares must sum to 1 or leave exactly one "
                    f"version out (versions: {', '.join(versions)})"
                )
            expected = given
        else:
            if isinstance(share, bool) or not isinstance(share, (int, float)):
                raise CanaryConfigError(f"share={share!r}: must be a number from 0 to 1")
            if len(versions) != 2:
                raise CanaryConfigError(
                    f"share={share!r}: this release runs {len(versions)} versions; give a "
                    f"mapping of version -> share"
                )
            pair = self._canary_and_stable()
            if pair is None:
                raise CanaryConfigError(
                    f"share={share!r}: nothing says which version is the canary; give a "
                    f"mapping of version -> share, e.g. {{{versions[-1]!r}: {share!r}}}"
                )
            canary, stable = pair
            # The canary first: the verdict's reason and table lead with it.
            expected = {canary: float(share), stable: 1.0 - float(share)}
        for version, value in expected.items():
            if not 0.0 <= value <= 1.0:
                raise CanaryConfigError(f"share of {version}={value!r}: must be from 0 to 1")
        return expected

    @_on_one_split
    def expect_split(
        self,
        share: float | Mapping[str, float],
        *,
        tolerance: float | None = None,
        alpha: float | None = None,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        max_requests: int | None = None,
        max_error_rate: float = 0.0,
        source: str | None = None,
    ) -> Verdict:
        """Assert the observed traffic split with a sequential, anytime-valid test.

        Sends batches until the confidence sequence for the canary share lies inside
        ``share ± tolerance`` (PASS) or outside it (FAIL); at ``max_requests`` the verdict is
        INCONCLUSIVE and fails, naming the n a decision would need. Either wrong verdict has
        probability at most ``alpha``.

        Args:
            share: the canary's expected share (0-1), or version -> share.
            max_error_rate: failed requests allowed (0: any failed request fails).
        """
        __tracebackhide__ = True
        headers, cookies = check_request(headers, cookies)
        settings = self._harness.settings.with_arguments(
            alpha=alpha, tolerance=tolerance, max_requests=max_requests
        )
        alpha, tolerance, max_requests = settings.alpha, settings.tolerance, settings.max_requests
        expected = self._expected_shares(share)
        _check_max_error_rate(max_error_rate)
        try:
            test = stats.SplitTest(expected, tolerance, alpha, max_requests=max_requests)
        except ValueError as exc:
            raise CanaryConfigError(str(exc)) from None
        started = time.perf_counter()

        def look(batch: Sample, total: Sample) -> bool:
            test.update(batch.counts)
            return not (
                (batch.classified == 0 and batch.error_count)  # nothing but errors: no evidence
                or (total.error_count and max_error_rate == 0)  # no failure allowed: FAIL already
                or total.total >= max_requests  # the budget counts failed requests too
            )

        total = self._rounds(test, look, headers=headers, cookies=cookies, source=source)
        decision = test.decision
        reason = ""
        passed = decision is stats.Decision.PASS
        if decision is stats.Decision.INCONCLUSIVE:
            reason = test.reason
        elif decision is stats.Decision.CONTINUE and total.classified == 0:
            reason = "every request failed"
        elif decision is stats.Decision.CONTINUE and total.total >= max_requests:
            reason = (
                f"undecided when the budget max_requests={max_requests} ran out "
                f"({total.error_count} of {total.total} requests failed)"
            )
        elif decision is stats.Decision.CONTINUE:
            reason = "stopped at the first failed request (max_error_rate=0)"
        elif test.unexpected:
            reason = f"responses from versions not in the release: {dict(test.unexpected)}"
        elif decision is stats.Decision.FAIL:
            reason = test.reason or "the observed share is outside the band"
        if total.error_count and stats.error_rate_exceeded(
            total.error_count, total.total, max_error_rate, alpha
        ):
            passed = False
            reason = (reason + "; " if reason else "") + (
                f"{total.error_count} of {total.total} requests failed (max_error_rate="
                f"{max_error_rate:g})"
            )
        verdict = self._verdict(
            kind="split",
            passed=passed,
            decision="PASS"
            if passed
            else ("FAIL" if decision is not stats.Decision.INCONCLUSIVE else "INCONCLUSIVE"),
            expected=expected,
            sample=total,
            alpha=alpha,
            tolerance=tolerance,
            intervals=dict(test.intervals),
            bands=dict(test.bands),
            reason=reason,
            elapsed=time.perf_counter() - started,
            history=list(test.history),
            request=_describe_request(headers, cookies, source),
        )
        return self._conclude(verdict)

    @_on_one_split
    def expect_routed(
        self,
        version: str,
        *,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        leak: float | None = None,
        alpha: float | None = None,
        max_error_rate: float = 0.0,
        source: str | None = None,
    ) -> Verdict:
        """Assert that every response comes from ``version``.

        Sends n = ceil(ln alpha / ln(1 - leak)) requests, so a leak rate of at least
        ``leak`` is caught with probability at least 1 - alpha; stops at the first response
        from another version. A failed answer (HTTP 5xx) that names another version is a
        leak too, even where ``max_error_rate`` allows failed requests.
        """
        __tracebackhide__ = True
        headers, cookies = check_request(headers, cookies)
        settings = self._harness.settings.with_arguments(alpha=alpha, leak=leak)
        alpha, leak = settings.alpha, settings.leak
        if version not in self._known_versions():
            raise CanaryConfigError(
                f"version={version!r}: not deployed by this release; versions are "
                f"{', '.join(self._known_versions())}"
            )
        try:
            needed = stats.routed_requests(leak, alpha)
        except ValueError as exc:
            raise CanaryConfigError(str(exc)) from None
        _check_max_error_rate(max_error_rate)
        started = time.perf_counter()
        relayed = _relayed(headers, cookies) if source is not None else headers
        sampler = self._sampler_get(source)
        sample = Sample()
        # n classified answers are what the leak bound needs; failed requests (when allowed)
        # do not count towards them. Bounded: at most 4 n + 100 requests in all.
        while sample.classified < needed and sample.total < 4 * needed + 100:
            batch = sampler.sample(
                needed - sample.classified,
                headers=relayed,
                cookies=None if source is not None else cookies,
                stop_when=lambda seen: seen != version,
            )
            sample.merge(batch)
            self._harness.environment.check_health()
            if _leaks(sample, version) or (sample.error_count and max_error_rate == 0):
                break
        leaked = _leaks(sample, version)
        passed = not leaked and sample.counts[version] >= needed
        if leaked:
            failed = {v: c for v, c in sample.version_errors.items() if v != version and c}
            reason = f"responses from {', '.join(leaked)} where only {version} was expected"
            if failed:
                # A failed answer from another version still reached that version: a leak.
                reason += (
                    " (failed answers included: "
                    + ", ".join(f"{v} x{c}" for v, c in sorted(failed.items()))
                    + ")"
                )
        elif sample.counts[version] < needed:
            reason = (
                f"only {sample.counts[version]} of the {needed} answers the leak bound needs "
                f"came back ({sample.error_count} of {sample.total} requests failed)"
            )
        else:
            reason = ""
        if sample.error_count and stats.error_rate_exceeded(
            sample.error_count, sample.total, max_error_rate, alpha
        ):
            passed = False
            reason = (reason + "; " if reason else "") + (
                f"{sample.error_count} of {sample.total} requests failed"
            )
        n = sample.classified
        verdict = self._verdict(
            kind="routed",
            passed=passed,
            decision="PASS" if passed else "FAIL",
            expected={version: 1.0},
            sample=sample,
            alpha=alpha,
            reason=reason
            or f"{n} responses, all from {version} (leak >= {leak:g} excluded at alpha={alpha:g})",
            elapsed=time.perf_counter() - started,
            request=_describe_request(headers, cookies, source),
        )
        return self._conclude(verdict)

    @_on_one_split
    def expect_healthy(
        self,
        *,
        max_error_increase: float = analysis.ERROR_MARGIN,
        max_latency_increase: float = analysis.LATENCY_MARGIN,
        quantile: float = analysis.QUANTILE,
        alpha: float | None = None,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        max_requests: int | None = None,
        versions: tuple[str, str] | None = None,
    ) -> Verdict:
        """Assert that the canary is as healthy as the stable version, on the same traffic.

        Sends rounds of requests until a sequential, anytime-valid comparison decides
        (:class:`pytest_canary.analysis.HealthTest`): PASS when the canary's error rate is at
        most ``max_error_increase`` above the stable's *and* its ``quantile`` latency at most
        ``1 + max_latency_increase`` times the stable's; FAIL as soon as either is shown
        worse; INCONCLUSIVE (a failure that says what would decide) at ``max_requests``, or
        when one version answers none of the first few hundred requests. A healthy canary
        fails with probability at most ``alpha``, an unhealthy one passes with probability at
        most ``alpha / 2``.

        Every answer that names its version (``X-App-Version``, HTTP 5xx included) counts for
        that version, a 5xx as an error. A failed request that names no version (refused,
        reset, timed out, a router's 502) cannot be attributed: for a PASS it counts as a
        canary error with the request timeout as its latency (the canary is not called
        healthy on the benefit of the doubt); a FAIL is decided on the answers that named
        their version (a stable that times out does not fail a healthy canary). When those
        failures alone keep it from passing, it ends INCONCLUSIVE saying how many and why.

        Args:
            max_error_increase: largest healthy ``error rate(canary) - error rate(stable)``.
            max_latency_increase: largest healthy ``latency(canary) / latency(stable) - 1``.
            quantile: the latency quantile compared (0.95: p95).
            headers, cookies: sent with every request (both versions must get traffic).
            max_requests: the budget (default: the session's ``max_requests``).
            versions: ``(canary, stable)`` when the handle cannot tell (own manifests
                without an ingress-nginx canary).

        Example:
            >>> rel = canary.deploy("nginx", "1.0", "2.0", weight=50)  # doctest: +SKIP
            >>> rel.expect_healthy(max_latency_increase=0.2)  # doctest: +SKIP
        """
        __tracebackhide__ = True
        headers, cookies = check_request(headers, cookies)
        settings = self._harness.settings.with_arguments(alpha=alpha, max_requests=max_requests)
        alpha, max_requests = settings.alpha, settings.max_requests
        canary, stable = self._health_pair(versions)
        try:
            test = analysis.HealthTest(
                max_error_increase=max_error_increase,
                max_latency_increase=max_latency_increase,
                quantile=quantile,
                alpha=alpha,
                max_requests=max_requests,
            )
        except ValueError as exc:
            raise CanaryConfigError(str(exc)) from None
        timeout = self._sampler_get(None).timeout
        started = time.perf_counter()

        def look(batch: Sample, total: Sample) -> bool:
            test.update(**_health_observations(batch, canary, stable, timeout))
            return True

        total = self._rounds(test, look, headers=headers, cookies=cookies, source=None)
        verdict = self._verdict(
            kind="health",
            passed=test.decision is stats.Decision.PASS,
            decision=test.decision.value,
            expected={},
            sample=total,
            alpha=alpha,
            reason=test.reason + _others(total, canary, stable),
            elapsed=time.perf_counter() - started,
            request=_describe_request(headers, cookies),
            **_health_fields(test, total, canary, stable),
        )
        return self._conclude(verdict)

    def _health_pair(self, versions: tuple[str, str] | None) -> tuple[str, str]:
        """(canary, stable) for expect_healthy, both answering now."""
        served = self._served_versions()
        if versions is not None:
            if (
                not isinstance(versions, tuple)
                or len(versions) != 2
                or not all(isinstance(v, str) for v in versions)
                or versions[0] == versions[1]
            ):
                raise CanaryConfigError(
                    f"versions={versions!r}: must be a pair of two different versions "
                    "(canary, stable)"
                )
            pair = versions
        else:
            found = self._canary_and_stable()
            if found is None:
                raise CanaryConfigError(
                    "expect_healthy: nothing says which version is the canary; pass "
                    f"versions=(canary, stable), e.g. versions={tuple(reversed(served[:2]))!r}"
                )
            pair = found
        missing = [v for v in pair if v not in served]
        if missing:
            raise CanaryConfigError(
                f"expect_healthy compares the canary with the stable version on the same "
                f"traffic, but {', '.join(missing)} does not answer now (versions answering: "
                f"{', '.join(served)}); compare before promote() or rollback()"
            )
        return pair

    def _verdict(
        self,
        *,
        kind: str,
        passed: bool,
        decision: str,
        expected: dict[str, float],
        sample: Sample,
        alpha: float,
        **extra: Any,
    ) -> Verdict:
        n = sample.classified
        return Verdict(
            kind=kind,
            passed=passed,
            decision=decision,
            expected=expected,
            observed={v: (c / n if n else 0.0) for v, c in sample.counts.most_common()},
            counts=dict(sample.counts),
            n=n,
            errors=dict(sample.errors),
            alpha=alpha,
            latency_ms=sample.latency_summary(),
            strategy=self._label(),
            test=self._harness.test_name,
            **extra,
        )

    def _conclude(self, verdict: Verdict) -> Verdict:
        __tracebackhide__ = True
        if self._harness.on_verdict is not None:
            self._harness.on_verdict(verdict)
        if not verdict.passed:
            raise CanaryAssertionError(verdict)
        return verdict

    def close(self) -> None:
        """Close this handle's connections."""
        for sampler in self._samplers.values():
            sampler.close()
        self._samplers.clear()


class Release(TrafficChecks):
    """A deployed canary release: change it, send traffic, assert what is observed."""

    def __init__(self, harness: Harness, spec: ReleaseSpec) -> None:
        self._harness = harness
        self.spec = spec
        self.phase = Phase.CANARY
        self.objects: list[Manifest] = []
        self._samplers: dict[str | None, Sampler] = {}
        self._entry: Entry | None = None

    # -- facts ---------------------------------------------------------------------------

    @property
    def stable_version(self) -> str:
        """The version the stable track runs now: the canary's version once ``promote()`` made
        it the only one (as Argo Rollouts and Flagger report it), else the version that ran
        before the release."""
        return self.spec.canary if self.phase is Phase.PROMOTED else self.spec.stable

    @property
    def previous_version(self) -> str:
        """The version that was stable when the release was deployed, whatever happened
        since: what ``rollback()`` returns to, also after a promotion."""
        return self.spec.stable

    @property
    def canary_version(self) -> str:
        """The new version being released."""
        return self.spec.canary

    @property
    def entry(self) -> Entry:
        """Where traffic enters the release."""
        if self._entry is None:
            self._entry = self._harness.environment.entry(self.spec)
        return self._entry

    @property
    def url(self) -> str:
        """Base URL of the release's entry point (send ``Host: spec.host`` where it matters)."""
        return self.entry.url

    def manifests_yaml(self) -> str:
        """The objects applied for the current phase, as YAML."""
        import yaml

        return yaml.safe_dump_all(self.objects, sort_keys=False)

    def __repr__(self) -> str:
        return (
            f"<Release {self.spec.name} {self.spec.strategy} {self.spec.stable}->{self.spec.canary}"
            f" {self.phase.value}>"
        )

    # -- changes -------------------------------------------------------------------------

    def _apply(self, phase: Phase) -> None:
        env = self._harness.environment
        if phase is Phase.CANARY and not self.objects:
            baseline = manifests.baseline(self.spec)
            if baseline:  # e.g. rolling: the stable version runs before the new image
                env.apply(baseline)
                env.await_dataplane(self.spec, baseline)
        objects = manifests.render(self.spec, phase)
        env.apply(objects)
        self.objects = objects
        self.phase = phase
        env.await_dataplane(self.spec, objects)

    def set_weight(self, weight: int) -> None:
        """Send ``weight`` percent of traffic to the canary.

        Raises:
            CanaryConfigError: if the weight is invalid or the strategy has none.
        """
        self._require_phase("set_weight")
        self.spec = self.spec.with_knobs(weight=weight)
        self._apply(Phase.CANARY)

    def reconfigure(self, **routing: Any) -> None:
        """Change any routing knobs of the release (validated like ``deploy``)."""
        self._require_phase("reconfigure")
        self.spec = self.spec.with_knobs(**routing)
        self._apply(Phase.CANARY)

    def promote(self, *, check_errors: bool = False, check_health: bool = False) -> Verdict | None:
        """Make the canary version the only one: 100% of traffic, canary objects deleted.

        With ``check_errors=True`` traffic keeps flowing through the switch and the call
        fails if any request failed (zero-downtime promotion). With ``check_health=True``
        the canary is first compared with the stable version (:meth:`expect_healthy` with its
        defaults): an unhealthy or undecided canary fails the call with the health table and
        nothing is promoted. For other limits, call ``expect_healthy(...)`` yourself before
        ``promote()``: it raises when the canary is not healthy. Where the canary gets no
        traffic (bluegreen; weight 0 on nginx, istio, gateway) ``check_health=True`` raises
        CanaryConfigError up front.

        Returns:
            The zero-downtime verdict with ``check_errors``, else the health verdict with
            ``check_health``, else None.
        """
        __tracebackhide__ = True
        health = None
        if check_health:
            self._require_phase("promote")
            self._require_canary_traffic()
            health = self.expect_healthy()  # raises: nothing is promoted
        switched = self._switch(Phase.PROMOTED, check_errors)
        return switched if switched is not None else health

    def _require_canary_traffic(self) -> None:
        """promote(check_health=True) compares the canary with the stable on the traffic they
        share: where the canary gets none, the comparison could only end INCONCLUSIVE."""
        spec = self.spec
        if spec.strategy == "bluegreen":
            raise CanaryConfigError(
                "promote(check_health=True) on bluegreen: green gets no traffic before the "
                "switch, so there is nothing to compare; use promote(check_errors=True) for a "
                "zero-downtime switch, or a strategy that splits traffic (nginx, istio, "
                "gateway, replicas) to compare health first"
            )
        if spec.weight == 0 and not spec.weights and spec.strategy in ("nginx", "istio", "gateway"):
            raise CanaryConfigError(
                f"promote(check_health=True) with weight=0 on {spec.strategy}: the canary gets "
                "no traffic without headers, so there is nothing to compare (a header that "
                "selects the canary sends it all the traffic, leaving the stable none); "
                "set_weight(n) first, e.g. set_weight(50), so both versions share the traffic, "
                "or promote(check_errors=True) for a zero-downtime switch without comparing"
            )

    def rollback(self, *, check_errors: bool = False) -> Verdict | None:
        """Return to the stable version only: canary objects deleted, 100% old version."""
        return self._switch(Phase.ROLLED_BACK, check_errors)

    def _require_phase(self, action: str) -> None:
        if self.phase is not Phase.CANARY:
            raise CanaryConfigError(
                f"{action}() on a release that is already {self.phase.value}: deploy a new "
                "release to start another canary"
            )

    def _switch(self, phase: Phase, check_errors: bool) -> Verdict | None:
        if phase is Phase.ROLLED_BACK and self.phase is Phase.PROMOTED:
            pass  # undo a promotion (e.g. one whose check_errors failed): back to stable
        else:
            self._require_phase("promote" if phase is Phase.PROMOTED else "rollback")
        if not check_errors:
            self._apply(phase)
            return None
        __tracebackhide__ = True
        return self._zero_downtime(
            lambda: self._apply(phase),
            during=f"the {phase.value} switch",
            request=f"{'promote' if phase is Phase.PROMOTED else 'rollback'}(check_errors=True)",
        )

    # -- traffic -------------------------------------------------------------------------

    def _sampler_get(self, source: str | None = None) -> Sampler:
        """The sampler of the release's entry, or of the frontend pods of version
        ``source`` relaying into the mesh (Istio ``sourceLabels``)."""
        if source not in self._samplers:
            settings = self._harness.settings
            if source is None:
                sampler = Sampler(
                    self.entry,
                    concurrency=settings.concurrency,
                    timeout=settings.timeout,
                    path=self.spec.path,
                    classify=self.spec.app.classifier(),
                )
            else:
                if not self.spec.source:
                    raise CanaryConfigError(
                        f"source={source!r}: this release has no frontend; deploy it with "
                        "source=True (strategy istio)"
                    )
                if source not in (self.spec.stable, self.spec.canary):
                    raise CanaryConfigError(
                        f"source={source!r}: frontends run {self.spec.stable!r} and "
                        f"{self.spec.canary!r}"
                    )
                entry = self._harness.environment.relay_entry(self.spec, source)
                sampler = Sampler(
                    entry,
                    concurrency=settings.concurrency,
                    timeout=settings.timeout,
                    path=f"/relay?n=1&to={quote(entry.relay or '', safe='')}",
                    classify=relay_classifier(),
                )
            self._samplers[source] = sampler
        return self._samplers[source]

    def ready_pods(self) -> dict[str, int]:
        """Ready pods of the release per version, as the backend sees them now (e.g. the
        pods of a paused rolling update)."""
        return self._harness.environment.ready_pods(self.spec)

    def _serving(self) -> str:
        return self.spec.canary if self.phase is Phase.PROMOTED else self.spec.stable

    def _served_versions(self) -> tuple[str, ...]:
        return self.spec.versions if self.phase is Phase.CANARY else (self._serving(),)

    def _known_versions(self) -> tuple[str, ...]:
        return self.spec.versions

    def _canary_and_stable(self) -> tuple[str, str] | None:
        return self.spec.canary, self.spec.stable

    def _label(self) -> str:
        return self.spec.strategy


class AppliedManifests(TrafficChecks):
    """Your own manifests, applied by :meth:`Harness.apply`: send traffic, assert what is
    observed. ``expect_split``, ``expect_routed`` and ``sample`` work as on a
    :class:`Release`; the versions are the workloads' pod label.

    Attributes:
        objects: the applied objects (in the test's namespace).
        versions: the versions of the workloads, in file order.
        canary_version: the version behind an ingress-nginx canary Ingress, when there is
            one (a single-number ``expect_split(0.1)`` means its share); else ``None``.
        path: the request path traffic is sent to.
        findings: what the linter found (non-empty only with ``findings="warn"/"ignore"``).
        version_from: how each response's version is read (:mod:`pytest_canary.apps`).
    """

    def __init__(
        self,
        harness: Harness,
        objects: list[Manifest],
        *,
        versions: tuple[str, ...],
        canary: str | None,
        path: str,
        findings: list[lint.Finding],
        version_from: VersionReader | None = None,
    ) -> None:
        self._harness = harness
        self._samplers = {}
        self.objects = objects
        self.versions = versions
        self.canary_version = canary
        self.path = path
        self.findings = findings
        self.version_from: VersionReader = (
            VersionFromHeader() if version_from is None else version_from
        )
        self._entry: Entry | None = None

    @property
    def entry(self) -> Entry:
        """Where traffic enters the applied manifests."""
        if self._entry is None:
            raise CanaryConfigError("the manifests are not applied yet")
        return self._entry

    @entry.setter
    def entry(self, value: Entry) -> None:
        self._entry = value

    @property
    def url(self) -> str:
        """Base URL of the entry point (requests carry the Host header of ``host``)."""
        return self.entry.url

    @property
    def host(self) -> str | None:
        """The Host header traffic carries."""
        return self.entry.host

    def manifests_yaml(self) -> str:
        """The applied objects, as YAML."""
        import yaml

        return yaml.safe_dump_all(self.objects, sort_keys=False)

    def _after_apply(self) -> None:
        """Called once the objects are applied and served (Rollouts: wait for a pause)."""

    def __repr__(self) -> str:
        where = self._entry.description if self._entry is not None else "not applied"
        return f"<AppliedManifests versions={list(self.versions)} {where}>"

    def _sampler_get(self, source: str | None = None) -> Sampler:
        if source is not None:
            raise CanaryConfigError(
                f"source={source!r}: applied manifests are sampled at their entry; traffic "
                "through a frontend needs canary.deploy('istio', ..., source=True)"
            )
        if None not in self._samplers:
            settings = self._harness.settings
            self._samplers[None] = Sampler(
                self.entry,
                concurrency=settings.concurrency,
                timeout=settings.timeout,
                path=self.path,
                classify=self.version_from.classifier(),
            )
        return self._samplers[None]

    def _served_versions(self) -> tuple[str, ...]:
        return self.versions

    def _canary_and_stable(self) -> tuple[str, str] | None:
        if self.canary_version is None or len(self.versions) != 2:
            return None
        stable = next(v for v in self.versions if v != self.canary_version)
        return self.canary_version, stable

    def _label(self) -> str:
        return "own manifests"


def _release_class(strategy: str) -> type[Release]:
    """The handle of a strategy: Argo Rollouts releases are driven by their controller."""
    if strategy == "rollouts":
        from pytest_canary.rollout_release import RolloutRelease

        return RolloutRelease
    return Release


def _applied_class(
    objects: list[Manifest], version_label: str, env: Environment
) -> Callable[..., AppliedManifests]:
    """The handle of applied manifests: with an Argo ``Rollout``, on a backend that runs
    the controller, one that drives it (asked only when there is a Rollout: a cluster
    backend may install the controller when asked)."""
    rollouts = [o["metadata"]["name"] for o in objects if o.get("kind") == "Rollout"]
    if not rollouts or not env.runs_argo_rollouts:
        return AppliedManifests
    if len(rollouts) > 1:
        raise CanaryConfigError(
            f"{len(rollouts)} Rollouts ({', '.join(rollouts)}) in one canary.apply: apply "
            "one Rollout per test"
        )
    from functools import partial

    from pytest_canary.rollout_release import AppliedRollout

    return partial(AppliedRollout, rollout=rollouts[0], version_label=version_label)


def _leaks(sample: Sample, version: str) -> dict[str, int]:
    """Answers from other versions than ``version``, failed ones (HTTP 5xx) included."""
    leaked = collections.Counter({v: c for v, c in sample.counts.items() if v != version and c})
    leaked.update({v: c for v, c in sample.version_errors.items() if v != version and c})
    return dict(leaked)


def _health_observations(batch: Sample, canary: str, stable: str, timeout: float) -> dict[str, Any]:
    """A batch as ``HealthTest.update`` takes it: answers naming a version count for it (a
    5xx as an error); failed requests that name no version go apart, each taking the request
    timeout, the most a request can take (HealthTest counts them against the canary for a
    PASS only)."""

    def of(version: str) -> analysis.Observations:
        latencies = batch.version_latencies.get(version, [])
        errors = batch.version_errors.get(version, 0)
        return analysis.Observations(batch.counts.get(version, 0) + errors, errors, latencies)

    return {
        "canary": of(canary),
        "stable": of(stable),
        "unattributed": [timeout] * batch.unattributed_errors,
        "reasons": dict(batch.unattributed),
    }


def _health_fields(
    test: analysis.HealthTest, total: Sample, canary: str, stable: str
) -> dict[str, Any]:
    """The evidence of a health verdict, as the flat fields of :class:`Verdict`."""
    roles = {canary: "canary", stable: "stable"}
    counts = {canary: test.canary, stable: test.stable}
    latency_intervals = {}
    quantiles = {}
    for version, role in roles.items():
        low, high = test.latency_interval(role)
        if low is not None or high is not None:
            # A side not bounded yet: 0 below, unbounded (inf; null in JSON) above.
            latency_intervals[version] = stats.Interval(
                0.0 if low is None else 1000 * low, math.inf if high is None else 1000 * high
            )
        observed = test.observed_quantile(role)
        if observed is not None:
            quantiles[version] = 1000 * observed
    comparisons = {
        name: aspect.interval
        for name, aspect in (("error increase", test.errors), ("latency ratio", test.latency))
        if aspect.interval is not None
    }
    return {
        "roles": roles,
        "checks": {"errors": test.errors.decision.value, "latency": test.latency.decision.value},
        "limits": {
            "max_error_increase": test.max_error_increase,
            "max_latency_increase": test.max_latency_increase,
            "quantile": test.quantile,
        },
        "version_requests": {v: c.requests for v, c in counts.items()},
        "version_errors": {v: c.errors for v, c in counts.items()},
        "error_rates": {v: c.error_rate for v, c in counts.items()},
        "error_intervals": {v: test.error_interval(roles[v]) for v in roles},
        "latency_quantiles_ms": quantiles,
        "latency_intervals_ms": latency_intervals,
        "unattributed_errors": total.unattributed_errors,
        "intervals": comparisons,
        "bands": {
            "error increase": stats.Interval(-1.0, test.max_error_increase),
            "latency ratio": stats.Interval(0.0, 1.0 + test.max_latency_increase),
        },
        "history": list(test.history),
    }


def _others(total: Sample, canary: str, stable: str) -> str:
    """A note on answers from versions the comparison leaves out (a third Istio subset)."""
    others = {v: c for v, c in total.counts.items() if v not in (canary, stable)}
    others.update(
        {
            v: others.get(v, 0) + c
            for v, c in total.version_errors.items()
            if v not in (canary, stable)
        }
    )
    if not others:
        return ""
    seen = ", ".join(f"{v} x{c}" for v, c in sorted(others.items()))
    return f" (answers from other versions, not compared: {seen})"


#: The failure rate around a change that ``check_errors=True`` catches with probability at
#: least ``1 - alpha`` (the traffic goes on until enough requests were sent).
ZERO_DOWNTIME_RATE = 0.01
#: How long ``check_errors=True`` keeps the traffic on after the change to reach its floor.
ZERO_DOWNTIME_WAIT = 60.0


class _BackendChecks:
    """Re-raises a background error of the backend in the test thread
    (``Environment.check_health``) as requests grow by a quarter, and once at the end: the
    statistical test looks after every round, the backend need not be asked that often."""

    def __init__(self, environment: Environment) -> None:
        self._environment = environment
        self._next = 0

    def after(self, requests: int) -> None:
        if requests >= self._next:
            self._environment.check_health()
            self._next = max(requests + stats.FIRST_BATCH, int(1.25 * requests))

    def final(self) -> None:
        self._environment.check_health()


def _check_max_error_rate(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise CanaryConfigError(
            f"max_error_rate={value!r}: must be a fraction from 0 (no failed request allowed) "
            "up to but excluding 1"
        )


def _relayed(
    headers: Mapping[str, str] | None, cookies: Mapping[str, str] | None
) -> dict[str, str]:
    """Headers for the frontend to forward on its relayed calls (sample app contract)."""
    out = {f"X-Canary-Forward-{k}": v for k, v in (headers or {}).items()}
    if cookies:
        out["X-Canary-Forward-Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return out


def _describe_request(
    headers: Mapping[str, str] | None,
    cookies: Mapping[str, str] | None,
    source: str | None = None,
) -> str:
    parts = [f"{k}: {v}" for k, v in (headers or {}).items()]
    parts += [f"cookie {k}={v}" for k, v in (cookies or {}).items()]
    if source is not None:
        parts.append(f"from frontend {source}")
    return ", ".join(parts)


def assert_split(
    sample: Sample,
    share: float,
    *,
    canary: str,
    tolerance: float = 0.05,
    alpha: float = 0.001,
) -> Verdict:
    """Assert a fixed sample you collected yourself: exact binomial (Clopper-Pearson) test.

    PASS when the (1 - alpha) Clopper-Pearson interval of ``canary``'s share lies inside
    ``share ± tolerance``; otherwise raises an ``AssertionError`` with the table.
    """
    __tracebackhide__ = True
    hits, n = sample.counts[canary], sample.classified
    result = stats.assert_split_counts(hits, n, share, tolerance, alpha)
    verdict = Verdict(
        kind="fixed split",
        passed=result.passed,
        decision="PASS" if result.passed else "FAIL",
        expected={canary: share},
        observed={v: c / n for v, c in sample.counts.items()} if n else {},
        counts=dict(sample.counts),
        n=n,
        errors=dict(sample.errors),
        alpha=alpha,
        tolerance=tolerance,
        intervals={canary: result.interval},
        bands={canary: stats.Interval(max(0.0, share - tolerance), min(1.0, share + tolerance))},
        reason=result.reason,
    )
    if not verdict.passed:
        raise CanaryAssertionError(verdict)
    return verdict
