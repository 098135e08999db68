"""Kubernetes versions: read from a server or an image, held against the add-ons' windows."""

from __future__ import annotations

import pytest

from pytest_canary.backends import addons
from pytest_canary.backends.versions import (
    Minor,
    Window,
    check,
    combined,
    image_minor,
    parse_minor,
    server_minor,
)
from pytest_canary.errors import BackendError


@pytest.mark.parametrize(
    ("info", "minor", "text"),
    [
        ({"major": "1", "minor": "35", "gitVersion": "v1.35.0"}, Minor(1, 35), "v1.35.0"),
        (
            {"major": "1", "minor": "33+", "gitVersion": "v1.33.5-eks-113cf36"},
            Minor(1, 33),
            "v1.33.5-eks-113cf36",
        ),
        ({"major": "1", "minor": "32+"}, Minor(1, 32), "1.32"),
    ],
)
def test_the_server_version_is_read_as_istioctl_reads_it(
    info: dict[str, str], minor: Minor, text: str
) -> None:
    assert server_minor(info) == (minor, text)


def test_a_version_nobody_wrote_is_an_error() -> None:
    with pytest.raises(BackendError, match="says no version"):
        server_minor({"platform": "linux/amd64"})


def test_node_image_tags_are_versions() -> None:
    assert image_minor("kindest/node:v1.35.0@sha256:" + "a" * 64) == Minor(1, 35)
    assert image_minor("registry.local:5000/kindest/node:v1.32.2") == Minor(1, 32)
    assert image_minor("kindest/node:latest") is None
    with pytest.raises(ValueError):
        parse_minor("one.two")


def test_the_pinned_add_ons_support_1_32_to_1_35_together() -> None:
    pins = addons.load_pins()
    windows = [w for pin in pins.values() if (w := pin.kubernetes) is not None]
    assert len(windows) == len(pins)
    assert combined(windows) == "1.32-1.35"
    for inside in (Minor(1, 32), Minor(1, 35)):
        check(inside, str(inside), windows, where="x")
    for outside in (Minor(1, 31), Minor(1, 36)):
        with pytest.raises(BackendError, match=rf"Kubernetes {outside} \(x\) is outside 1.32-1.35"):
            check(outside, str(outside), windows, where="x")


def test_windows_that_do_not_overlap_say_so() -> None:
    a = Window("a 1", Minor(1, 34), None, "why a")
    b = Window("b 1", None, Minor(1, 33), "why b")
    assert combined([a, b]) == "none (the windows do not overlap)"
