"""Version readers (``pytest_canary.apps``) and the ``app=AppImage(...)`` knob's validation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_canary import AppImage, CanaryConfigError, Harness, build_spec
from pytest_canary.apps import VersionFromHeader, VersionFromJson, VersionFromRegex
from pytest_canary.backends.local import LocalBackend
from pytest_canary.spec import SAMPLE_APP

SAMPLE_BODY = b'{"app":"kubeapp","version":"2.0","track":"canary","hostname":"p"}\n'


def test_header_reader_is_case_insensitive_and_the_default() -> None:
    classify = VersionFromHeader().classifier()
    assert classify(200, {"x-app-version": "2.0"}, b"") == "2.0"
    assert classify(200, {"X-App-Version": " 1.0 "}, b"") == "1.0"
    assert classify(200, {}, b"") is None
    assert classify(200, {"X-App-Version": ""}, b"") is None
    assert SAMPLE_APP.version_from == VersionFromHeader("X-App-Version")
    assert SAMPLE_APP.version_header == "X-App-Version"


@pytest.mark.parametrize(
    ("path", "body", "version"),
    [
        ("version", SAMPLE_BODY, "2.0"),
        ("build.version", b'{"build": {"version": "3.1"}}', "3.1"),
        ("items.1.v", b'{"items": [{"v": "a"}, {"v": "b"}]}', "b"),
        ("version", b'{"version": 2}', "2"),
        ("version", b'{"version": true}', None),
        ("version", b'{"version": null}', None),
        ("version", b'{"other": "2.0"}', None),
        ("build.version", b'{"build": "2.0"}', None),
        ("version", b"not json", None),
        ("version", b"\xff\xfe", None),
        ("version", b'["2.0"]', None),
    ],
)
def test_json_reader_walks_a_dotted_path(path: str, body: bytes, version: str | None) -> None:
    assert VersionFromJson(path).classifier()(200, {}, body) == version


@pytest.mark.parametrize(
    ("pattern", "body", "version"),
    [
        (r'"version":"([^"]+)"', SAMPLE_BODY, "2.0"),
        (r"Version: (?P<version>\S+)", b"Build 7\nVersion: 4.2\n", "4.2"),
        (r"(\w+) (?P<version>v\d+)", b"release v9", "v9"),
        (r"v\d+\.\d+", b"running v1.2 now", "v1.2"),
        (r"Version: (\S+)", b"no version here", None),
        (r"Version: (\S*)", b"Version: ", None),
    ],
)
def test_regex_reader_takes_the_version_group_first_group_or_match(
    pattern: str, body: bytes, version: str | None
) -> None:
    assert VersionFromRegex(pattern).classifier()(200, {}, body) == version


@pytest.mark.parametrize(
    ("app", "message"),
    [
        (
            AppImage("registry.example/shop"),
            "app.image='registry.example/shop': must be an image reference with {version}",
        ),
        (
            AppImage("Registry/Shop:{version}"),
            "app.image='Registry/Shop:{version}': gives 'Registry/Shop:1.0' for version '1.0', "
            "which is not a valid image reference",
        ),
        (AppImage("shop:{version}", port=0), "app.port=0: must be an integer from 1 to 65535"),
        (AppImage("shop:{version}", port=70000), "app.port=70000: must be an integer from 1"),
        (AppImage("shop:{version}", port=True), "app.port=True: must be an integer"),
        (
            AppImage("shop:{version}", health="healthz"),
            "app.health='healthz': must be an HTTP path starting with '/'",
        ),
        (
            AppImage("shop:{version}", version_from=VersionFromHeader("")),
            "app.version_from.header='': must be an HTTP header name",
        ),
        (
            AppImage("shop:{version}", version_from=VersionFromHeader("X Version")),
            "app.version_from.header='X Version': must be an HTTP header name",
        ),
        (
            AppImage("shop:{version}", version_from=VersionFromJson("build..version")),
            "app.version_from.path='build..version': must be a dotted path",
        ),
        (
            AppImage("shop:{version}", version_from=VersionFromRegex("Version: (")),
            "app.version_from.pattern='Version: (': is not a valid regular expression",
        ),
        (
            AppImage("shop:{version}", version_from=VersionFromRegex("v?")),
            "app.version_from.pattern='v?': matches the empty string",
        ),
        (
            AppImage("shop:{version}", version_from="X-Version"),  # type: ignore[arg-type]
            "app.version_from='X-Version': must be VersionFromHeader(name), "
            "VersionFromJson('dotted.path') or VersionFromRegex(pattern)",
        ),
        ("shop:{version}", "app='shop:{version}': must be a pytest_canary.AppImage"),
    ],
)
def test_bad_app_names_field_value_and_what_is_allowed(app: object, message: str) -> None:
    with pytest.raises(CanaryConfigError) as info:
        build_spec("nginx", stable="1.0", canary="2.0", app=app)
    assert message in str(info.value)


def test_any_app_image_is_accepted_and_rendered() -> None:
    app = AppImage(
        "registry.example:5000/team/shop:{version}",
        port=9090,
        health="/healthz",
        version_from=VersionFromJson("build.version"),
    )
    spec = build_spec("nginx", stable="1.0", canary="2.0", app=app)
    assert spec.app is app
    assert spec.app.version_header is None
    assert app.image_for("2.0") == "registry.example:5000/team/shop:2.0"
    assert build_spec("nginx", stable="1.0", canary="2.0", app=None).app == SAMPLE_APP


def test_fault_injection_still_needs_the_sample_app() -> None:
    with pytest.raises(CanaryConfigError, match="fault injection needs the sample app"):
        build_spec("nginx", "1.0", "2.0", app=AppImage("shop:{version}"), canary_error_rate=0.1)
    with pytest.raises(CanaryConfigError, match=r"canary_latency_ms=100\.0: fault injection needs"):
        build_spec("nginx", "1.0", "2.0", app=AppImage("shop:{version}"), canary_latency_ms=100)


@pytest.fixture
def harness() -> Iterator[Harness]:
    backend = LocalBackend(seed=7)
    try:
        with Harness(backend.environment("test-apps")) as h:
            yield h
    finally:
        backend.close()


def test_the_release_samples_with_the_apps_reader(harness: Harness) -> None:
    """The sampler classifies real responses with ``version_from``: reading the JSON
    ``version`` finds the versions, reading ``track`` finds stable/canary instead (so the
    reader is really used, not the header)."""
    by_json = AppImage(SAMPLE_APP.image, version_from=VersionFromJson("version"))
    rel = harness.deploy("nginx", stable="1.0", canary="2.0", weight=50, app=by_json)
    rel.expect_routed("2.0", headers={"X-Canary": "always"}, leak=0.1)
    wrong = AppImage(SAMPLE_APP.image, version_from=VersionFromJson("track"))
    other = harness.deploy("nginx", "1.0", "2.0", name="tracked", host="t.bar", app=wrong)
    sample = other.sample(20, headers={"X-Canary": "always"})
    assert dict(sample.counts) == {"canary": 20}, sample


def test_readers_never_crash_on_hostile_bodies() -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    assert VersionFromJson("version").classifier()(200, {}, deep) is None
    from pytest_canary.traffic import relay_classifier

    assert relay_classifier()(200, {}, deep) is None
    assert relay_classifier()(200, {}, b"[1, 2]") is None


def test_two_different_version_headers_are_unreadable_not_the_first() -> None:
    from multidict import CIMultiDict

    from pytest_canary.apps import UnreadableVersion

    classify = VersionFromHeader().classifier()
    same = CIMultiDict([("X-App-Version", "2.0"), ("x-app-version", "2.0")])
    assert classify(200, same, b"") == "2.0"
    with pytest.raises(UnreadableVersion, match="two different X-App-Version headers"):
        classify(200, CIMultiDict([("X-App-Version", "1.0"), ("X-App-Version", "2.0")]), b"")
    # One field line carrying both (RFC 9110 5.3: the same as two lines), as a proxy may join them.
    with pytest.raises(UnreadableVersion, match="two different X-App-Version headers"):
        classify(200, CIMultiDict([("X-App-Version", "1.0, 2.0")]), b"")
    with pytest.raises(UnreadableVersion, match="two different X-App-Version headers"):
        classify(200, {"X-App-Version": "1.0,2.0"}, b"")
    assert classify(200, {"X-App-Version": "2.0, 2.0"}, b"") == "2.0"
    assert classify(200, {"X-App-Version": "2.0,"}, b"") == "2.0"  # empty elements ignored


def test_a_catastrophic_body_regex_is_unreadable_in_bounded_time() -> None:
    from pytest_canary.apps import REGEX_TIME_LIMIT, UnreadableVersion

    classify = VersionFromRegex(r"(a|aa)+$").classifier()
    with pytest.raises(UnreadableVersion, match="body regex took over"):
        classify(200, {}, b"a" * 200 + b"!")
    assert REGEX_TIME_LIMIT <= 0.1
