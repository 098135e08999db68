"""Kubernetes versions: the window each pinned add-on supports, and the check that runs on a
cluster before anything is installed or applied there.

The windows are pinned next to the add-ons (``fixtures/addons.yaml``, key ``kubernetes``),
each with the upstream fact behind it. A cluster is checked against the add-ons it uses: on
kind the ones installed (``--canary-addons``), on ``kube`` the pinned data planes the cluster
runs (an ingress-nginx IngressClass, Istio's or Gateway API's API group served; see
:func:`pytest_canary.backends.kube.backend.dataplanes_in`). Outside a window the run stops
with one error naming the server's version, the window and each add-on that needs it;
``--canary-any-kubernetes-version`` runs anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_canary.errors import BackendError

OPT_OUT = "--canary-any-kubernetes-version"


@dataclass(frozen=True, order=True)
class Minor:
    """A Kubernetes minor version, e.g. 1.35."""

    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


def parse_minor(text: str) -> Minor:
    """``"1.32"`` -> ``Minor(1, 32)``.

    Raises:
        ValueError: for anything else.
    """
    found = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?", text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not a Kubernetes version (MAJOR.MINOR)")
    return Minor(int(found.group(1)), int(found.group(2)))


def server_minor(info: Mapping[str, Any]) -> tuple[Minor, str]:
    """The minor version of an API server's ``/version`` answer, and how it wrote it.

    ``gitVersion`` first (``v1.33.5-eks-113cf36``: the leading numbers), as istioctl reads it
    (istioctl/pkg/install/k8sversion/version.go ``extractKubernetesVersion``); else ``major``
    and ``minor`` (managed clusters write ``"33+"``).

    Raises:
        BackendError: when neither says a version.
    """
    git = str(info.get("gitVersion") or "")
    found = re.match(r"v?(\d+)\.(\d+)", git)
    if found:
        return Minor(int(found.group(1)), int(found.group(2))), git
    major = re.match(r"\d+", str(info.get("major") or ""))
    minor = re.match(r"\d+", str(info.get("minor") or ""))
    if major and minor:
        return Minor(int(major.group()), int(minor.group())), f"{major.group()}.{minor.group()}"
    raise BackendError(f"the API server's /version says no version: {dict(info)}")


def image_minor(image: str) -> Minor | None:
    """The Kubernetes version of a ``kindest/node:v1.35.0[@sha256:...]`` image (None when
    its tag is not a version)."""
    tag = image.split("@", 1)[0].rpartition("/")[2].partition(":")[2]
    try:
        return parse_minor(tag)
    except ValueError:
        return None


@dataclass(frozen=True)
class Window:
    """The Kubernetes versions one add-on supports.

    Attributes:
        addon: the add-on and its pinned version, e.g. ``istio 1.30.3``.
        low: the oldest minor version (None: no lower bound known).
        high: the newest minor version (None: no upper bound known).
        why: the upstream fact behind it.
    """

    addon: str
    low: Minor | None
    high: Minor | None
    why: str

    def admits(self, version: Minor) -> bool:
        """Whether ``version`` is inside the window."""
        return (self.low is None or version >= self.low) and (
            self.high is None or version <= self.high
        )

    def describe(self) -> str:
        """``istio 1.30.3 needs 1.32 or newer (why)``."""
        if self.low is not None and self.high is not None:
            bounds = f"{self.low}-{self.high}"
        elif self.low is not None:
            bounds = f"{self.low} or newer"
        else:
            bounds = f"{self.high} or older"
        return f"{self.addon} needs {bounds} ({self.why})"


def window_of(addon: str, entry: Mapping[str, Any]) -> Window:
    """A window from its ``fixtures/addons.yaml`` entry (``min``, ``max``, ``why``).

    Raises:
        BackendError: for a malformed entry.
    """
    try:
        low = parse_minor(str(entry["min"])) if entry.get("min") else None
        high = parse_minor(str(entry["max"])) if entry.get("max") else None
    except ValueError as exc:
        raise BackendError(f"fixtures/addons.yaml, {addon}: kubernetes: {exc}") from None
    return Window(addon, low, high, str(entry.get("why") or "no reason given"))


def combined(windows: Iterable[Window]) -> str:
    """The versions inside every window, in words: ``1.32-1.35``."""
    lows = [w.low for w in windows if w.low is not None]
    highs = [w.high for w in windows if w.high is not None]
    low, high = (max(lows) if lows else None), (min(highs) if highs else None)
    if low is not None and high is not None:
        return f"{low}-{high}" if low <= high else "none (the windows do not overlap)"
    if low is not None:
        return f"{low} or newer"
    return f"{high} or older" if high is not None else "any"


def check(version: Minor, text: str, windows: Iterable[Window], *, where: str) -> None:
    """Refuse a Kubernetes version outside any of ``windows``.

    Raises:
        BackendError: naming the version, ``where`` it runs, the combined window and each
            add-on whose window excludes it, and the opt-out flag.
    """
    every = list(windows)
    failing = [w for w in every if not w.admits(version)]
    if not failing:
        return
    needs = "; ".join(w.describe() for w in failing)
    raise BackendError(
        f"Kubernetes {text} ({where}) is outside {combined(every)}, the versions the pinned "
        f"add-ons support: {needs}. Use a cluster in that window, or pass {OPT_OUT} to run "
        "anyway (failures may then come from the version)"
    )
