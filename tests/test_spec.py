"""The spec refuses bad input with a message naming the field, the value and what is allowed."""

from __future__ import annotations

import re

import pytest

from pytest_canary import CanaryConfigError, build_spec
from pytest_canary.spec import check_request


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"weight": 150}, "weight=150: must be an integer from 0 to 100"),
        ({"weight": -1}, "weight=-1: must be an integer from 0 to 100"),
        ({"weight": 20.5}, "weight=20.5: must be an integer"),
        ({"weight": True}, "weight=True: must be an integer"),
        ({"weight_total": 50}, "weight_total=50: must be an integer from 100 or more"),
        ({"header": "X Canary"}, "header='X Canary': ingress-nginx accepts only letters, digits"),
        (
            {"header": "X-Canary", "header_value": "a b"},
            "header_value='a b': ingress-nginx accepts",
        ),
        ({"cookie": "user;cd"}, "cookie='user;cd': ingress-nginx accepts only"),
        (
            {"header": "Region", "header_value": "cd", "header_pattern": "cd|sz"},
            "header_value='cd' and header_pattern='cd|sz' given together",
        ),
        (
            {"header": "Region", "header_pattern": "cd(|sz"},
            "header_pattern='cd(|sz': is not a valid",
        ),
        ({"stable_replicas": 3}, "strategy 'nginx' has no routing knob 'stable_replicas'"),
        ({"canary_host": "foo.bar"}, "canary_host='foo.bar': must differ from host='foo.bar'"),
        ({"host": "Foo_Bar"}, "host='Foo_Bar': must be a lowercase DNS name"),
        ({"path": "shop"}, "path='shop': must be an absolute URL path"),
        ({"path_type": "Regex"}, "path_type='Regex': must be 'Prefix', 'Exact'"),
        ({"canary_error_rate": 1.5}, "canary_error_rate=1.5: must be a fraction from 0 to 1"),
        ({"canary_latency_ms": -1}, "canary_latency_ms=-1: must be milliseconds from 0 to 60000"),
        ({"canary_latency_ms": "150-50"}, "canary_latency_ms='150-50': must be milliseconds"),
        ({"canary_latency_ms": "slow"}, "canary_latency_ms='slow': must be milliseconds"),
        ({"canary_latency_ms": True}, "canary_latency_ms=True: must be milliseconds"),
        ({"canary_latency_ms": 61_000}, "canary_latency_ms=61000: must be milliseconds"),
        ({"name": "Kube_App"}, "name='Kube_App': must be a DNS-1035 label"),
    ],
)
def test_nginx_knob_errors_name_field_value_and_allowed(
    knobs: dict[str, object], message: str
) -> None:
    with pytest.raises(CanaryConfigError, match=re.escape(message)):
        build_spec("nginx", stable="1.0", canary="2.0", **knobs)  # type: ignore[arg-type]


def test_unknown_knob_lists_the_allowed_ones() -> None:
    with pytest.raises(CanaryConfigError) as info:
        build_spec("nginx", stable="1.0", canary="2.0", wieght=20)
    text = str(info.value)
    assert "wieght=20" in text
    for knob in ("weight", "weight_total", "header", "header_value", "header_pattern", "cookie"):
        assert knob in text


def test_unknown_strategy_lists_strategies() -> None:
    with pytest.raises(
        CanaryConfigError, match=r"strategy='flagger': must be one of .*nginx.*istio"
    ):
        build_spec("flagger", stable="1.0", canary="2.0")


def test_stable_equal_to_canary_is_refused() -> None:
    with pytest.raises(CanaryConfigError, match=r"stable='1.0', canary='1.0': the canary must be"):
        build_spec("nginx", stable="1.0", canary="1.0")


@pytest.mark.parametrize("version", ["", "1.0/beta", "-1", "v" * 64, 2])
def test_versions_must_be_label_values(version: object) -> None:
    with pytest.raises(CanaryConfigError, match=r"canary=.*usable as a Kubernetes label value"):
        build_spec("nginx", stable="1.0", canary=version)  # type: ignore[arg-type]


def test_cookie_is_not_a_gateway_api_knob_and_says_why() -> None:
    with pytest.raises(CanaryConfigError, match="Gateway API HTTPRoute has no cookie match"):
        build_spec("gateway", stable="1.0", canary="2.0", cookie="user_from_cd")


def test_weight_may_exceed_100_with_a_larger_total() -> None:
    spec = build_spec("nginx", stable="1.0", canary="2.0", weight=150, weight_total=1000)
    assert (spec.weight, spec.weight_total) == (150, 1000)


def test_nginx_header_defaults_to_x_canary_and_can_be_turned_off() -> None:
    assert build_spec("nginx", stable="1.0", canary="2.0").header == "X-Canary"
    assert build_spec("nginx", stable="1.0", canary="2.0", header=None).header is None


def test_with_knobs_revalidates() -> None:
    spec = build_spec("nginx", stable="1.0", canary="2.0", weight=20, cookie="c")
    assert spec.with_knobs(weight=50).weight == 50
    assert spec.with_knobs(weight=50).cookie == "c"
    with pytest.raises(CanaryConfigError, match="weight=101"):
        spec.with_knobs(weight=101)


def test_spec_is_frozen() -> None:
    spec = build_spec("nginx", stable="1.0", canary="2.0")
    with pytest.raises(AttributeError):
        spec.weight = 5  # type: ignore[misc]


def test_header_value_needs_a_header_where_there_is_no_default() -> None:
    with pytest.raises(CanaryConfigError, match=re.escape("header_value='beta' needs header=...")):
        build_spec("istio", stable="v1", canary="v2", header_value="beta")


@pytest.mark.parametrize(
    "pattern",
    # What Python's re accepts and RE2 refuses: lookaround, backreferences, possessive and
    # atomic groups, \\Z, comments, repetitions above 1000.
    ["(?!bot).*", "(?<=x)y", r"(a)\1", "a*+", "(?>a)", r"a\Z", "(?#note)a", "a{1001}"],
)
def test_istio_and_gateway_regexes_must_be_re2(pattern: str) -> None:
    for strategy in ("istio", "gateway"):
        with pytest.raises(CanaryConfigError, match=r"header_value=.*Envoy's RE2, and RE2 refuses"):
            build_spec(
                strategy,
                stable="v1",
                canary="v2",
                header="x-user",
                header_value=pattern,
                header_match="regex",
            )


@pytest.mark.parametrize("pattern", [r"\p{Greek}+", r"\x{41}b", r"\Qa.b\E", "a{1000}", r"(a+)+$"])
def test_valid_re2_that_python_re_refuses_is_accepted(pattern: str) -> None:
    spec = build_spec(
        "gateway",
        stable="v1",
        canary="v2",
        header="x-user",
        header_value=pattern,
        header_match="regex",
    )
    assert spec.header_value == pattern


def test_istio_regex_longer_than_istiod_allows_is_refused() -> None:
    with pytest.raises(CanaryConfigError, match="at most 1024 characters"):
        build_spec(
            "istio",
            stable="v1",
            canary="v2",
            header="x-user",
            header_value="a" * 1025,
            header_match="regex",
        )


@pytest.mark.parametrize("pattern", ["y(?=x)", r"(a)\1", "a*+", r"\p{Greek}"])
def test_nginx_header_pattern_is_pcre(pattern: str) -> None:
    spec = build_spec("nginx", stable="1.0", canary="2.0", header_pattern=pattern)
    assert spec.header_pattern == pattern


@pytest.mark.parametrize("pattern", ["(?<=x)y", "a b", "a,b", "#x"])
def test_nginx_header_pattern_outside_is_valid_regex_is_refused(pattern: str) -> None:
    """parser/validators.go IsValidRegex: ingress-nginx would reset it to '' silently."""
    with pytest.raises(CanaryConfigError, match=r"in a header pattern \(it would silently ignore"):
        build_spec("nginx", stable="1.0", canary="2.0", header_pattern=pattern)


def test_nginx_header_pattern_that_pcre_cannot_compile_is_refused() -> None:
    with pytest.raises(CanaryConfigError, match=r"header_pattern='a\(': is not a valid PCRE"):
        build_spec("nginx", stable="1.0", canary="2.0", header_pattern="a(")


def test_re2_compatible_regexes_are_accepted() -> None:
    spec = build_spec(
        "istio",
        stable="v1",
        canary="v2",
        header="x-user",
        header_value="(cd|sz)-[0-9]+",
        header_match="regex",
    )
    assert spec.header_value == "(cd|sz)-[0-9]+"


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("/a\r\nb", "only URL path characters"),
        ("/a?x=1", "only URL path characters"),
        ("/a#frag", "only URL path characters"),
        ("/a b", "only URL path characters"),
        ("/" + "a" * 9000, "at most 1024 characters"),
        ("/a//b", "must not contain '//'"),
        ("/a/../b", "must not contain '/../'"),
        ("/a/.", "must not contain '/.'"),
        ("/x%2Fy", "must not contain '%2F'"),
        ("shop", "must be an absolute URL path"),
    ],
)
@pytest.mark.parametrize("strategy", ["nginx", "istio", "gateway", "replicas"])
def test_path_is_validated_like_the_ingress_and_httproute_apis(
    strategy: str, path: str, rule: str
) -> None:
    with pytest.raises(CanaryConfigError, match=re.escape(rule)) as caught:
        build_spec(strategy, stable="v1", canary="v2", path=path)
    assert str(caught.value).startswith("path=")


def test_nginx_prefix_paths_follow_strict_validate_path_type() -> None:
    with pytest.raises(CanaryConfigError, match="strict-validate-path-type"):
        build_spec("nginx", stable="v1", canary="v2", path="/caf%C3%A9")
    spec = build_spec(
        "nginx", stable="v1", canary="v2", path="/caf%C3%A9", path_type="ImplementationSpecific"
    )
    assert spec.path == "/caf%C3%A9"
    assert build_spec("gateway", stable="v1", canary="v2", path="/a:b@c").path == "/a:b@c"


@pytest.mark.parametrize(
    ("headers", "cookies", "message"),
    [
        ("x", None, r"headers='x': must be a mapping of header name to value \(str to str\)"),
        (None, ["a=b"], r"cookies=\['a=b'\]: must be a mapping of cookie name to value"),
        ({"X-A": 1}, None, r"headers\['X-A'\]=1: must be a mapping of header name to value"),
        ({"X A": "1"}, None, r"headers name 'X A': must be an HTTP token of 1 to 256"),
        ({"": "1"}, None, r"headers name '': must be an HTTP token"),
        ({"X-A": "a\r\nHost: evil"}, None, r"must not contain control characters \(CR, LF, NUL"),
        ({"X-A": "a\x00"}, None, r"headers\['X-A'\]='a\\x00': a header value must not contain"),
        (
            {"X-A": "v" * 5000},
            None,
            r"headers\['X-A'\]='v{79}\.\.\. \(5002 characters\): a header "
            r"value of at most 4096 characters",
        ),
        ({f"X-{i}": "1" for i in range(33)}, None, r"headers: 33 entries given; at most 32"),
        (None, {"user": "a;admin=1"}, r"cookies\['user'\]='a;admin=1': a cookie value must not"),
        (None, {"a=b": "1"}, r"cookies name 'a=b': must be an HTTP token"),
        (None, {f"c{i}": "v" * 200 for i in range(30)}, r"cookies: \d+ characters as one Cookie"),
    ],
)
def test_headers_and_cookies_are_bounded_mappings_of_str(
    headers: object, cookies: object, message: str
) -> None:
    with pytest.raises(CanaryConfigError, match=message):
        check_request(headers, cookies)


def test_headers_and_cookies_are_copied_when_valid() -> None:
    headers = {"X-Canary": "always", "X-Trace": "a b\tc"}
    assert check_request(headers, {"canary": "always"}) == (headers, {"canary": "always"})
    assert check_request(None, None) == (None, None)
