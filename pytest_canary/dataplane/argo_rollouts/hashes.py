"""The two hashes the controller compares to tell what changed: the pod template's and the
steps'.

Upstream (argoproj/argo-rollouts, tag v1.9.1):

- **Pod template hash** (``utils/hash`` ``ComputePodTemplateHash``: fnv-1a,
  k8s.io/apimachinery ``rand.SafeEncodeString``): the ``rollouts-pod-template-hash`` label
  of a template's ReplicaSet and pods. Computed here over our canonical JSON, not
  byte-for-byte Argo's (the JSON of the Go structs), so it names the same templates apart
  but is not Argo's own value.
- **Step hash** (``utils/conditions`` ``ComputeStepHash``: fnv-1a of ``json.Marshal(steps)``,
  ``SafeEncodeString``): ``status.currentStepHash``. It follows Go's field order and
  omitempty for the modelled steps, so it matches Argo's value for them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_canary.dataplane.argo_rollouts.api import POD_TEMPLATE_HASH

_SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def _safe_encode(text: str) -> str:
    """k8s.io/apimachinery ``rand.SafeEncodeString``."""
    return "".join(_SAFE_ALPHANUMS[ord(ch) % len(_SAFE_ALPHANUMS)] for ch in text)


def _fnv32a(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def pod_template_hash(template: Mapping[str, Any]) -> str:
    """The ``rollouts-pod-template-hash`` of a template (``utils/hash``
    ``ComputePodTemplateHash``: fnv-1a, ``SafeEncodeString``), over our canonical JSON."""
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels.pop(POD_TEMPLATE_HASH, None)
    clean = {**template, "metadata": {**(template.get("metadata") or {}), "labels": labels}}
    blob = json.dumps(clean, sort_keys=True, separators=(",", ":")).encode()
    return _safe_encode(str(_fnv32a(blob)))


# Go struct field order of CanaryStep and its parts (types.go), for json.Marshal.
_GO_ORDER: dict[str, tuple[str, ...]] = {
    "step": (
        "setWeight",
        "pause",
        "experiment",
        "analysis",
        "setCanaryScale",
        "setHeaderRoute",
        "setMirrorRoute",
        "plugin",
    ),
    "pause": ("duration",),
    "setCanaryScale": ("weight", "replicas", "matchTrafficWeight"),
    "setHeaderRoute": ("name", "match"),
    "match": ("headerName", "headerValue"),
    "headerValue": ("exact", "prefix", "regex"),
    "setMirrorRoute": ("name", "match", "percentage"),
}


def _go_json(value: Any, kind: str) -> Any:
    if isinstance(value, Mapping):
        order = _GO_ORDER.get(kind)
        keys = (
            [k for k in order if k in value] + sorted(k for k in value if k not in order)
            if order
            else sorted(value)
        )
        out = {}
        for key in keys:
            item = value[key]
            if item in (None, "", False) and key not in ("name", "headerName"):
                continue  # omitempty
            out[key] = _go_json(item, key)
        return out
    if isinstance(value, list):
        return [_go_json(item, kind) for item in value]
    return value


def step_hash(raw_steps: Sequence[Mapping[str, Any]]) -> str:
    """``status.currentStepHash`` (utils/conditions ``ComputeStepHash``: fnv-1a of
    ``json.Marshal(steps)``, ``SafeEncodeString``), with Go's field order and omitempty for
    the modelled step types, so it is Argo's own value for them."""
    steps = [_go_json(step, "step") for step in raw_steps]
    blob = json.dumps(steps, separators=(",", ":"), ensure_ascii=False).encode()
    return _safe_encode(str(_fnv32a(blob)))
