"""Schema checks for rendered manifests: is every object one the API server would accept?

One job: take plain Kubernetes objects (dicts) and report every field the target API would
reject, as :class:`Problem` records. Nothing here looks across objects (whether a
VirtualService's subset exists in a DestinationRule is another module's job).

What each kind is checked against:

- **Core Kubernetes kinds** (Deployment, Service, Ingress, Namespace, ConfigMap, ...): the
  strict OpenAPI-derived JSON schemas shipped by the ``kubernetes-validate`` package, for the
  newest Kubernetes minor version it ships that is not newer than the one asked for (see
  :func:`schema_version`). "Strict" means unknown fields are rejected.
- **Istio** ``networking.istio.io`` ``v1`` / ``v1beta1`` / ``v1alpha3`` VirtualService and
  DestinationRule, and **Gateway API** ``gateway.networking.k8s.io/v1`` HTTPRoute, Gateway and
  GatewayClass (v1.6 standard channel): schemas written here from the upstream API
  definitions (istio/api ``networking/v1/virtual_service.proto`` and
  ``destination_rule.proto``, istio/istio ``pkg/config/validation``; kubernetes-sigs/gateway-api
  ``apis/v1/*_types.go``), plus the CEL / webhook rules those APIs enforce inside one object.
  Unknown fields are rejected, except inside the few sub-trees listed in
  ``UNCHECKED_SUBTREES`` whose content is only type-checked.
- **Every kind**: ``metadata.name`` (required, DNS-1123), ``metadata.namespace`` and the
  label maps (keys are qualified names, values are label values).

Any other apiVersion/kind gives one Problem whose message starts with ``no schema for``
(:attr:`Problem.missing_schema`); the caller decides whether that is fatal.

Example:
    >>> problems = validate_objects([{"apiVersion": "v1", "kind": "ConfigMap",
    ...                               "metadata": {"name": "Web"}}])
    >>> print(problems[0])
    ConfigMap/Web: metadata.name: "Web" is not a valid name; must be a DNS-1123 subdomain \
(lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, \
at most 253 characters)
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jsonschema  # type: ignore[import-untyped]
from referencing import Registry, Resource

from pytest_canary.errors import CanaryConfigError
from pytest_canary.re2 import re2_problem
from pytest_canary.yaml_loader import check_bounded

__all__ = [
    "DEFAULT_KUBERNETES_VERSION",
    "NO_SCHEMA",
    "Problem",
    "check_objects",
    "schema_version",
    "shipped_kubernetes_versions",
    "supported_custom_kinds",
    "validate_objects",
]

DEFAULT_KUBERNETES_VERSION = "1.34"
NO_SCHEMA = "no schema for"

Schema = dict[str, Any]
PathParts = tuple[str | int, ...]
Finding = tuple[PathParts, str]
Rule = Callable[[Mapping[str, Any]], Iterator[Finding]]


@dataclass(frozen=True)
class Problem:
    """One field of one object that the target API would reject.

    Attributes:
        kind: the object's ``kind`` (or a placeholder in angle brackets when it has none).
        name: the object's ``metadata.name`` (or a placeholder in angle brackets).
        path: where in the object, e.g. ``spec.rules[0].backendRefs[1].weight``; map keys
            that are not plain identifiers are quoted:
            ``metadata.labels["app.kubernetes.io/name"]``.
        message: what is wrong: the value found and what is allowed.
    """

    kind: str
    name: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}: {self.path}: {self.message}"

    @property
    def missing_schema(self) -> bool:
        """True when the object's apiVersion/kind is one this module has no schema for."""
        return self.message.startswith(NO_SCHEMA)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _plain(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """Mappings as dicts (jsonschema only treats dict as an object); everything else as is.

    A part shared by several places (a YAML alias) is converted once and stays shared: the
    copy is as small as the input, never its expansion (``check_bounded`` ran first).
    """
    memo = {} if memo is None else memo
    if not isinstance(value, (Mapping, list)):
        return value
    done = memo.get(id(value))
    if done is not None:
        return done
    if isinstance(value, Mapping):
        plain: Any = {key: _plain(item, memo) for key, item in value.items()}
    else:
        plain = [_plain(item, memo) for item in value]
    memo[id(value)] = plain
    return plain


def _mapping(value: object) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def _typed(value: object) -> str:
    """A value with its JSON type: ``string "3"``, ``integer 20``, ``null``."""
    return "null" if value is None else f"{_json_type(value)} {_show(value)}"


def _show(value: object, limit: int = 80) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _join(values: Iterable[object]) -> str:
    return ", ".join(str(value) for value in values)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _format_path(parts: PathParts) -> str:
    if not parts:
        return "(object)"
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part, ensure_ascii=False)}]"
    return text


def _path_key(parts: PathParts) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, part) if isinstance(part, int) else (1, str(part)) for part in parts)


def _ordered_unique(findings: Iterable[Finding]) -> list[Finding]:
    """Drop repeats; sort by path (list indices numerically), keeping each path's order."""
    unique = list(dict.fromkeys(findings))
    return sorted(unique, key=lambda finding: _path_key(finding[0]))


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def validate_objects(
    objects: Iterable[Mapping[str, Any]],
    *,
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION,
) -> list[Problem]:
    """Check each object against the schema of its apiVersion/kind.

    Args:
        objects: Kubernetes objects as plain mappings (rendered manifests, parsed YAML).
        kubernetes_version: the cluster version to check core kinds against, ``"1.34"``,
            ``"v1.34"`` or ``"1.34.2"``; see :func:`schema_version` for the one really used.

    Returns:
        Every problem found, object by object in input order, each object's problems in
        path order. An empty list means every object is valid.

    Raises:
        CanaryConfigError: ``kubernetes_version`` is not a version number.

    Example:
        >>> validate_objects([{"apiVersion": "v1", "kind": "Namespace",
        ...                    "metadata": {"name": "canary-test"}}])
        []
    """
    schema_dir = _schema_dir(kubernetes_version)
    problems: list[Problem] = []
    for index, obj in enumerate(objects):
        problems.extend(_validate_one(obj, index, schema_dir))
    return problems


def check_objects(
    objects: Iterable[Mapping[str, Any]],
    *,
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION,
    ignore_missing_schemas: bool = False,
) -> None:
    """Raise if any object would be rejected; do nothing when all are valid.

    Args:
        objects: Kubernetes objects as plain mappings.
        kubernetes_version: as for :func:`validate_objects`.
        ignore_missing_schemas: do not count objects of kinds this module has no schema for.

    Raises:
        CanaryConfigError: listing every problem, one per line (``Kind/name: path: message``).
    """
    __tracebackhide__ = True
    problems = validate_objects(objects, kubernetes_version=kubernetes_version)
    if ignore_missing_schemas:
        problems = [problem for problem in problems if not problem.missing_schema]
    if not problems:
        return
    count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
    header = (
        f"{count} in the manifests (Kubernetes {schema_version(kubernetes_version)} schemas, "
        "Istio networking v1, Gateway API v1.6 standard channel, Argo Rollouts v1.9.1):"
    )
    raise CanaryConfigError("\n".join([header, *(str(problem) for problem in problems)]))


def shipped_kubernetes_versions() -> tuple[str, ...]:
    """Kubernetes minor versions (``"1.34"``) the installed kubernetes-validate has schemas for."""
    return tuple(f"{major}.{minor}" for major, minor in _shipped_schema_dirs())


def schema_version(kubernetes_version: str = DEFAULT_KUBERNETES_VERSION) -> str:
    """The Kubernetes minor version whose schemas check core kinds for ``kubernetes_version``.

    The newest shipped version not newer than the one asked for; the oldest shipped one when
    the request predates them all (the closest available).

    Example:
        >>> schema_version("v1.34.2")
        '1.34'
    """
    return _schema_dir_version(_schema_dir(kubernetes_version))


def supported_custom_kinds() -> dict[str, tuple[str, ...]]:
    """The custom kinds checked here, e.g. ``{"HTTPRoute": ("gateway.networking.k8s.io/v1",)}``."""
    return {
        kind: tuple(f"{group}/{version}" for version in custom.versions)
        for (group, kind), custom in _CUSTOM_KINDS.items()
    }


# --------------------------------------------------------------------------------------------
# One object
# --------------------------------------------------------------------------------------------


def _validate_one(obj: object, index: int, schema_dir: str) -> list[Problem]:
    if not isinstance(obj, Mapping):
        return [
            Problem(
                "<not an object>",
                f"<item {index}>",
                "(object)",
                f"got {_typed(obj)}; each manifest must be a mapping",
            )
        ]
    try:
        check_bounded(obj, f"<item {index}>")
    except CanaryConfigError as exc:
        return [Problem("<too large>", f"<item {index}>", "(object)", str(exc))]
    plain = _plain(obj)
    kind_value = plain.get("kind")
    kind = kind_value if isinstance(kind_value, str) and kind_value else "<no kind>"
    metadata = plain.get("metadata")
    name_value = metadata.get("name") if isinstance(metadata, dict) else None
    name = name_value if isinstance(name_value, str) and name_value else f"<unnamed, item {index}>"

    findings: list[Finding] = []
    findings.extend(_type_findings(plain, schema_dir))
    findings.extend(_metadata_findings(plain))
    return [
        Problem(kind, name, _format_path(path), message)
        for path, message in _ordered_unique(findings)
    ]


def _type_findings(obj: dict[str, Any], schema_dir: str) -> Iterator[Finding]:
    """Findings of the schema (and the in-object rules) of the object's apiVersion/kind."""
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    usable = True
    for field, value, example in (
        ("apiVersion", api_version, "apps/v1"),
        ("kind", kind, "Deployment"),
    ):
        if value is None:
            yield (field,), f"required field is missing; must be a string like {example!r}"
            usable = False
        elif not isinstance(value, str) or not value:
            yield (field,), f"got {_show(value)}; must be a non-empty string like {example!r}"
            usable = False
    if not usable:
        return
    assert isinstance(api_version, str) and isinstance(kind, str)
    group, _, version = api_version.rpartition("/")

    custom = _CUSTOM_KINDS.get((group, kind))
    if custom is not None:
        if version not in custom.versions:
            served = ", ".join(f"{group}/{v}" for v in custom.versions)
            message = f"{_show(api_version)} does not serve {kind}; must be one of {served}"
            yield ("apiVersion",), message
            return
        validator = _custom_validator(schema_dir, group, kind)
        yield from _schema_findings(validator, obj)
        for rule in custom.rules:
            yield from rule(obj)
        return

    core = _core_validator(schema_dir, api_version, kind)
    if core is None:
        yield ("kind",), _no_schema_message(api_version, kind, schema_dir)
        return
    yield from _schema_findings(core, obj)
    yield from _core_rules(obj)


def _no_schema_message(api_version: str, kind: str, schema_dir: str) -> str:
    by_api: dict[str, list[str]] = {}
    for (group, custom_kind), custom in _CUSTOM_KINDS.items():
        versions = ",".join(custom.versions)
        api = f"{group}/{{{versions}}}" if len(custom.versions) > 1 else f"{group}/{versions}"
        by_api.setdefault(api, []).append(custom_kind)
    known = "; ".join(f"{api} {', '.join(kinds)}" for api, kinds in by_api.items())
    return (
        f"{NO_SCHEMA} {api_version}/{kind}: not a core kind of Kubernetes "
        f"{_schema_dir_version(schema_dir)} nor one of {known}"
    )


# --------------------------------------------------------------------------------------------
# Kubernetes schemas shipped by kubernetes-validate
# --------------------------------------------------------------------------------------------

_K8S_DEFINITIONS_URI = "https://kubernetes.io/api/_definitions.json"
_K8S_DEFS = _K8S_DEFINITIONS_URI + "#/$defs/"
_VERSION_ARG = re.compile(r"v?(\d+)\.(\d+)(?:\.\d+)?")
_SCHEMA_DIR_NAME = re.compile(r"v(\d+)\.(\d+)\.\d+-local-strict")
_SAFE_KIND = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_SAFE_API_VERSION = re.compile(r"(?:[a-z0-9.-]+/)?v[a-z0-9]+")


def _schema_root() -> Any:
    return resources.files("kubernetes_validate") / "kubernetes-json-schema"


@functools.cache
def _shipped_schema_dirs() -> dict[tuple[int, int], str]:
    found: dict[tuple[int, int], str] = {}
    for entry in _schema_root().iterdir():
        match = _SCHEMA_DIR_NAME.fullmatch(entry.name)
        if match:
            found[(int(match[1]), int(match[2]))] = entry.name
    if not found:
        raise CanaryConfigError(
            "kubernetes-validate ships no strict schemas (no kubernetes-json-schema/"
            "v*-local-strict directory): reinstall it with `pip install kubernetes-validate`"
        )
    return dict(sorted(found.items()))


@functools.cache
def _schema_dir(kubernetes_version: str) -> str:
    match = _VERSION_ARG.fullmatch(kubernetes_version.strip())
    if not match:
        raise CanaryConfigError(
            f"kubernetes_version={kubernetes_version!r}: must be a Kubernetes version like "
            f"'1.34', 'v1.34' or '1.34.2' (schemas ship for "
            f"{', '.join(shipped_kubernetes_versions())})"
        )
    wanted = (int(match[1]), int(match[2]))
    shipped = _shipped_schema_dirs()
    not_newer = [version for version in shipped if version <= wanted]
    chosen = not_newer[-1] if not_newer else next(iter(shipped))
    return shipped[chosen]


def _schema_dir_version(schema_dir: str) -> str:
    match = _SCHEMA_DIR_NAME.fullmatch(schema_dir)
    assert match, schema_dir
    return f"{match[1]}.{match[2]}"


@functools.cache
def _registry(schema_dir: str) -> Registry[Any]:
    """The shared Kubernetes type definitions of one version (1.5 MB: loaded once)."""
    text = (_schema_root() / schema_dir / "_definitions.json").read_text(encoding="utf-8")
    definitions: Resource[Any] = Resource.from_contents(json.loads(text))
    registry: Registry[Any] = Registry().with_resource(_K8S_DEFINITIONS_URI, definitions)
    return registry


@functools.cache
def _core_validator(schema_dir: str, api_version: str, kind: str) -> Any | None:
    """A validator for a core kind, or None when the version ships no schema for it."""
    if not (_SAFE_KIND.fullmatch(kind) and _SAFE_API_VERSION.fullmatch(api_version)):
        return None
    group, _, version = api_version.rpartition("/")
    # kubernetes-validate names files <kind>-<first label of the group>-<version>.json
    # (utils.validate: "rbac.authorization.k8s.io/v1" -> "rbac-v1"); check the exact group
    # below so that e.g. networking.istio.io/v1 Ingress does not pass as networking.k8s.io.
    prefix = f"{group.split('.')[0]}-{version}" if group else version
    path = _schema_root() / schema_dir / f"{kind.lower()}-{prefix}.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text(encoding="utf-8"))
    gvks = schema.get("x-kubernetes-group-version-kind", [])
    if {"group": group, "kind": kind, "version": version} not in gvks:
        return None
    registry = Resource.from_contents(schema) @ _registry(schema_dir)
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.cache
def _custom_validator(schema_dir: str, group: str, kind: str) -> Any:
    schema = _CUSTOM_KINDS[(group, kind)].schema
    return jsonschema.Draft202012Validator(schema, registry=_registry(schema_dir))


# --------------------------------------------------------------------------------------------
# Turning jsonschema errors into findings
# --------------------------------------------------------------------------------------------


def _schema_findings(validator: Any, obj: dict[str, Any]) -> Iterator[Finding]:
    for error in validator.iter_errors(obj):
        yield from _error_findings(error)


def _error_findings(error: Any) -> Iterator[Finding]:
    path: PathParts = tuple(error.absolute_path)
    keyword: str = error.validator
    schema: Schema = error.schema if isinstance(error.schema, dict) else {}
    value = error.instance
    limit = error.validator_value

    if "propertyNames" in error.relative_schema_path:
        yield path, f"key {_show(value)} is not valid; must be {_describe(schema)}"
    elif keyword == "required":
        for field in limit:
            if isinstance(value, dict) and field not in value:
                wanted = _describe(schema.get("properties", {}).get(field, {}))
                yield (*path, field), f"required field is missing; must be {wanted}"
    elif keyword == "additionalProperties" and isinstance(value, dict):
        known = sorted(schema.get("properties", {}))
        for field in value:
            if field not in known:
                yield (*path, field), _unknown_field_message(str(field), known)
    elif keyword == "type":
        yield path, f"got {_typed(value)}; must be {_describe(schema)}"
    elif keyword == "enum":
        yield path, f"got {_show(value)}; must be one of {_join(limit)}"
    elif keyword in ("minimum", "maximum", "pattern", "minLength"):
        yield path, f"got {_show(value)}; must be {_describe(schema)}"
    elif keyword == "maxLength":
        yield path, f"got {len(value)} characters; must be {_describe(schema)}"
    elif keyword == "minItems":
        yield path, f"got {len(value)} items; must have at least {limit}"
    elif keyword == "maxItems":
        yield path, f"got {len(value)} items; must have at most {limit}"
    elif keyword == "uniqueItems":
        yield path, f"got duplicate items in {_show(value)}; items must be unique"
    elif keyword in ("minProperties", "maxProperties") and schema.get("x-choice"):
        given = ", ".join(sorted(value)) or "none"
        yield path, f"sets {given}; must set {schema['x-choice']}"
    elif keyword == "minProperties":
        yield path, f"got {len(value)} entries; must have at least {limit}"
    elif keyword == "maxProperties":
        yield path, f"got {len(value)} entries; must have at most {limit}"
    elif keyword in ("oneOf", "anyOf"):
        choices = " or ".join(_describe(sub) for sub in limit)
        yield path, f"got {_typed(value)}; must be {choices}"
    else:
        yield path, str(error.message)


def _unknown_field_message(field: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(field, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown field {field!r}{hint}; allowed fields: {', '.join(known)}"


_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
}


_REF_WORDS = {
    "IntOrString": "an integer or a string",
    "Quantity": "a quantity like 500m or 1Gi",
    "Time": "an RFC 3339 time string",
    "MicroTime": "an RFC 3339 time string",
}


def _describe(schema: Mapping[str, Any]) -> str:
    """What a schema allows, in words: ``an integer from 0 to 1000000``."""
    if "x-allowed" in schema:
        return str(schema["x-allowed"])
    if "enum" in schema:
        return f"one of {_join(schema['enum'])}"
    if "$ref" in schema:
        type_name = str(schema["$ref"]).rsplit(".", 1)[-1]
        return _REF_WORDS.get(type_name, f"a mapping ({type_name})")
    types = schema.get("type", [])
    names = [types] if isinstance(types, str) else [t for t in types if t != "null"]
    words = " or ".join(_TYPE_WORDS.get(name, name) for name in names) or "a valid value"
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        words += f" from {low} to {high}"
    elif low is not None:
        words += f" >= {low}"
    elif high is not None:
        words += f" <= {high}"
    shortest, longest = schema.get("minLength"), schema.get("maxLength")
    if shortest and longest:
        words += f" of {shortest} to {longest} characters"
    elif shortest:
        words += f" of at least {shortest} character" + ("s" if shortest > 1 else "")
    elif longest:
        words += f" of at most {longest} characters"
    if "pattern" in schema:
        words += f" matching {schema['pattern']}"
    return words


# --------------------------------------------------------------------------------------------
# Checks every kind gets: names and labels
# --------------------------------------------------------------------------------------------

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = rf"{_DNS_LABEL}(\.{_DNS_LABEL})*"
_RFC1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME_PART = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"

DNS_LABEL_WORDS = (
    "a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter "
    "or digit, at most 63 characters)"
)
DNS_SUBDOMAIN_WORDS = (
    "a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', starting and ending with "
    "a letter or digit, at most 253 characters)"
)
RFC1035_LABEL_WORDS = (
    "a DNS-1035 label (lowercase letters, digits and '-', starting with a letter and ending "
    "with a letter or digit, at most 63 characters)"
)
LABEL_VALUE_WORDS = (
    "a label value (empty, or at most 63 letters, digits, '-', '_' and '.', starting and "
    "ending with a letter or digit)"
)
QUALIFIED_NAME_WORDS = (
    "a qualified name: an optional DNS-1123 subdomain prefix and '/', then at most 63 "
    "letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
)


#: apimachinery objectmeta.go TotalAnnotationSizeLimitB: 256 KiB of annotation keys and values.
ANNOTATIONS_MAX_BYTES = 256 * 1024


@dataclass(frozen=True)
class _NameRule:
    regex: re.Pattern[str]
    max_length: int
    words: str


_SUBDOMAIN_NAME = _NameRule(re.compile(_DNS_SUBDOMAIN), 253, DNS_SUBDOMAIN_WORDS)
_LABEL_NAME = _NameRule(re.compile(_DNS_LABEL), 63, DNS_LABEL_WORDS)
_RFC1035_NAME = _NameRule(re.compile(_RFC1035_LABEL), 63, RFC1035_LABEL_WORDS)

# Kinds whose names are stricter than a DNS-1123 subdomain (Kubernetes
# pkg/apis/core/validation: ValidateServiceName is DNS-1035, ValidateNamespaceName DNS-1123 label).
_NAME_RULES: dict[str, _NameRule] = {"Service": _RFC1035_NAME, "Namespace": _LABEL_NAME}


def _name_problem(value: str, rule: _NameRule) -> str | None:
    if len(value) > rule.max_length or not rule.regex.fullmatch(value):
        return f"{_show(value)} is not a valid name; must be {rule.words}"
    return None


def _metadata_findings(obj: dict[str, Any]) -> Iterator[Finding]:
    kind = obj.get("kind")
    rule = _NAME_RULES.get(kind, _SUBDOMAIN_NAME) if isinstance(kind, str) else _SUBDOMAIN_NAME
    metadata = obj.get("metadata")
    if metadata is None:
        yield ("metadata", "name"), f"required field is missing; must be {rule.words}"
        return
    if not isinstance(metadata, dict):
        # Worded as the schema's own type error, so that the two collapse into one.
        yield ("metadata",), f"got {_typed(metadata)}; must be a mapping"
        return
    name = metadata.get("name")
    if name is None or name == "":
        yield ("metadata", "name"), f"required field is missing; must be {rule.words}"
    elif isinstance(name, str) and (problem := _name_problem(name, rule)):
        yield ("metadata", "name"), problem
    namespace = metadata.get("namespace")
    if isinstance(namespace, str) and (problem := _name_problem(namespace, _LABEL_NAME)):
        yield ("metadata", "namespace"), problem
    yield from _label_findings(("metadata", "labels"), metadata.get("labels"))
    annotations = metadata.get("annotations")
    if isinstance(annotations, dict):
        # apimachinery pkg/api/validation/objectmeta.go ValidateAnnotationsSize: keys and
        # values together at most TotalAnnotationSizeLimitB (256 KiB), checked first (the
        # API server refuses the object whatever its keys are).
        size = sum(
            len(k.encode()) + len(v.encode())
            for k, v in annotations.items()
            if isinstance(k, str) and isinstance(v, str)
        )
        if size > ANNOTATIONS_MAX_BYTES:
            yield (
                ("metadata", "annotations"),
                f"Too long: may not be more than {ANNOTATIONS_MAX_BYTES} bytes (keys and values "
                f"together are {size} bytes)",
            )
            return
        for key in annotations:
            if isinstance(key, str) and (problem := _qualified_name_problem(key)):
                yield ("metadata", "annotations", key), f"key {problem}"


def _qualified_name_problem(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > 253 or not re.fullmatch(_DNS_SUBDOMAIN, prefix)):
        return f"{_show(key)} is not valid; must be {QUALIFIED_NAME_WORDS}"
    if len(name) > 63 or not re.fullmatch(_QUALIFIED_NAME_PART, name):
        return f"{_show(key)} is not valid; must be {QUALIFIED_NAME_WORDS}"
    return None


def _label_findings(path: PathParts, labels: object) -> Iterator[Finding]:
    """Keys must be qualified names and values label values (Kubernetes
    apimachinery pkg/util/validation: IsQualifiedName, IsValidLabelValue)."""
    if not isinstance(labels, dict):
        return
    for key, value in labels.items():
        if isinstance(key, str) and (problem := _qualified_name_problem(key)):
            yield (*path, key), f"key {problem}"
        if isinstance(value, str) and (len(value) > 63 or not re.fullmatch(_LABEL_VALUE, value)):
            yield (*path, key), f"got {_show(value)}; must be {LABEL_VALUE_WORDS}"


def _core_rules(obj: Mapping[str, Any]) -> Iterator[Finding]:
    """Label maps inside core kinds' specs (pod templates and selectors)."""
    spec = _mapping(obj.get("spec"))
    template = _mapping(spec.get("template"))
    yield from _label_findings(
        ("spec", "template", "metadata", "labels"), _mapping(template.get("metadata")).get("labels")
    )
    selector = spec.get("selector")
    if obj.get("kind") == "Service":
        yield from _label_findings(("spec", "selector"), selector)
    else:
        yield from _label_findings(
            ("spec", "selector", "matchLabels"), _mapping(selector).get("matchLabels")
        )


# --------------------------------------------------------------------------------------------
# Schema building blocks for the custom kinds (JSON Schema as Python dicts)
# --------------------------------------------------------------------------------------------


def _obj(properties: Mapping[str, Schema], *, required: Sequence[str] = (), **extra: Any) -> Schema:
    """A mapping with exactly these fields (unknown fields rejected)."""
    schema: Schema = {
        "type": "object",
        "properties": dict(properties),
        "additionalProperties": False,
        **extra,
    }
    if required:
        schema["required"] = list(required)
    return schema


def _open_obj(properties: Mapping[str, Schema]) -> Schema:
    """A mapping whose listed fields are checked and whose other fields are not."""
    return {"type": "object", "properties": dict(properties)}


def _choice(properties: Mapping[str, Schema], *, at_least_one: bool) -> Schema:
    """A protobuf ``oneof``: exactly one (or at most one) of the fields."""
    names = _join(properties)
    return _obj(
        properties,
        maxProperties=1,
        **(
            {"minProperties": 1, "x-choice": f"exactly one of {names}"}
            if at_least_one
            else {"x-choice": f"at most one of {names}"}
        ),
    )


def _str(
    *,
    pattern: str | None = None,
    allowed: str | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
) -> Schema:
    schema: Schema = {"type": "string"}
    if pattern is not None:
        # Anchored with \Z: "$" would also accept a trailing newline.
        schema["pattern"] = rf"^(?:{pattern})\Z"
    if min_length is not None:
        schema["minLength"] = min_length
    if max_length is not None:
        schema["maxLength"] = max_length
    if allowed is not None:
        schema["x-allowed"] = allowed
    return schema


def _int(minimum: int | None = None, maximum: int | None = None) -> Schema:
    schema: Schema = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def _num(minimum: float, maximum: float) -> Schema:
    return {"type": "number", "minimum": minimum, "maximum": maximum}


def _enum(*values: str | int) -> Schema:
    return {"enum": list(values)}


def _arr(
    items: Schema,
    *,
    min_items: int | None = None,
    max_items: int | None = None,
    unique: bool = False,
) -> Schema:
    schema: Schema = {"type": "array", "items": items}
    if min_items is not None:
        schema["minItems"] = min_items
    if max_items is not None:
        schema["maxItems"] = max_items
    if unique:
        schema["uniqueItems"] = True
    return schema


def _map(values: Schema, *, keys: Schema | None = None, max_entries: int | None = None) -> Schema:
    schema: Schema = {"type": "object", "additionalProperties": values}
    if keys is not None:
        schema["propertyNames"] = keys
    if max_entries is not None:
        schema["maxProperties"] = max_entries
    return schema


_STRING = _str()
_BOOL: Schema = {"type": "boolean"}
_ANY_OBJECT: Schema = {"type": "object"}
_STRINGS = _arr(_STRING)
_STRING_MAP = _map(_STRING)
_OBJECT_META: Schema = {"$ref": _K8S_DEFS + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
_LABEL_SELECTOR: Schema = {"$ref": _K8S_DEFS + "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"}


def _top_level(kind: str, api_versions: Sequence[str], spec: Schema) -> Schema:
    return _obj(
        {
            "apiVersion": _enum(*api_versions),
            "kind": _enum(kind),
            "metadata": _OBJECT_META,
            "spec": spec,
            # Written by controllers, never by us: its content is not checked.
            "status": _ANY_OBJECT,
        },
        # metadata is optional here as in the core schemas: _metadata_findings reports a
        # missing metadata.name once, whatever the kind.
        required=["apiVersion", "kind", "spec"],
    )


# Sub-trees whose content is only type-checked (a mapping), not field by field: the harness
# never renders them and their upstream definitions are large.
UNCHECKED_SUBTREES: tuple[str, ...] = (
    "DestinationRule trafficPolicy.connectionPool / outlierDetection / tunnel / "
    "proxyProtocol / retryBudget, loadBalancer and tls fields other than simple / mode",
    "metadata / status of every custom kind (metadata uses the Kubernetes ObjectMeta schema)",
    "Rollout analysis / experiment / plugin steps, blueGreen, and the traffic routers other "
    "than nginx and Istio (type-checked only)",
)

# --------------------------------------------------------------------------------------------
# Istio networking: VirtualService, DestinationRule
# Source: istio/api networking/v1/virtual_service.proto, destination_rule.proto;
# webhook rules: istio/istio pkg/config/validation (validateHTTPRoute, validateDestination...).
# --------------------------------------------------------------------------------------------

ISTIO_GROUP = "networking.istio.io"
ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")
_ISTIO_API_VERSIONS = [f"{ISTIO_GROUP}/{version}" for version in ISTIO_VERSIONS]

# google.protobuf.Duration as Istio's CRDs accept it (Go time.ParseDuration syntax).
_GO_DURATION = _str(
    pattern=r"([0-9]+(\.[0-9]+)?(h|m|s|ms|us|µs|ns))+",
    allowed="a duration like 5s, 250ms or 1m30s",
)
_ISTIO_STRING_MATCH_FIELDS = {"exact": _STRING, "prefix": _STRING, "regex": _STRING}
# uri, scheme, method, authority, queryParams: one of exact|prefix|regex.
_ISTIO_STRING_MATCH = _choice(_ISTIO_STRING_MATCH_FIELDS, at_least_one=True)
# headers, withoutHeaders: `{}` checks presence only (HTTPMatchRequest.headers docs).
_ISTIO_HEADER_MATCH = _choice(_ISTIO_STRING_MATCH_FIELDS, at_least_one=False)
_ISTIO_PERCENT = _obj({"value": _num(0, 100)})
_ISTIO_PORT_SELECTOR = _obj({"number": _int(1, 65535)})
_ISTIO_DESTINATION = _obj(
    {
        "host": _str(min_length=1),
        "subset": _str(pattern=_DNS_LABEL, allowed=DNS_LABEL_WORDS),
        "port": _ISTIO_PORT_SELECTOR,
    },
    required=["host"],
)
_ISTIO_HEADER_OPERATIONS = _obj({"set": _STRING_MAP, "add": _STRING_MAP, "remove": _STRINGS})
_ISTIO_HEADERS = _obj({"request": _ISTIO_HEADER_OPERATIONS, "response": _ISTIO_HEADER_OPERATIONS})
# HTTPRouteDestination.weight is an int32; istio/istio validateWeight: weight >= 0.
ISTIO_MAX_WEIGHT = 2**31 - 1
_ISTIO_WEIGHT = _int(0, ISTIO_MAX_WEIGHT)
_ISTIO_HTTP_MATCH = _obj(
    {
        "name": _STRING,
        "uri": _ISTIO_STRING_MATCH,
        "scheme": _ISTIO_STRING_MATCH,
        "method": _ISTIO_STRING_MATCH,
        "authority": _ISTIO_STRING_MATCH,
        "headers": _map(_ISTIO_HEADER_MATCH),
        "port": _int(1, 65535),
        "sourceLabels": _STRING_MAP,
        "gateways": _STRINGS,
        "queryParams": _map(_ISTIO_STRING_MATCH),
        "ignoreUriCase": _BOOL,
        "withoutHeaders": _map(_ISTIO_HEADER_MATCH),
        "sourceNamespace": _STRING,
        "statPrefix": _STRING,
    }
)
_ISTIO_HTTP_ROUTE = _obj(
    {
        "name": _STRING,
        "match": _arr(_ISTIO_HTTP_MATCH),
        "route": _arr(
            _obj(
                {
                    "destination": _ISTIO_DESTINATION,
                    "weight": _ISTIO_WEIGHT,
                    "headers": _ISTIO_HEADERS,
                },
                required=["destination"],
            )
        ),
        "redirect": _obj(
            {
                "uri": _STRING,
                "authority": _STRING,
                "port": _int(1, 65535),
                "derivePort": _enum("FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"),
                "scheme": _STRING,
                "redirectCode": _int(0, 599),
            }
        ),
        "directResponse": _obj(
            {
                "status": _int(200, 599),
                "body": _choice({"string": _STRING, "bytes": _STRING}, at_least_one=True),
            },
            required=["status"],
        ),
        "delegate": _obj({"name": _STRING, "namespace": _STRING}),
        "rewrite": _obj(
            {
                "uri": _STRING,
                "authority": _STRING,
                "uriRegexRewrite": _obj({"match": _STRING, "rewrite": _STRING}),
            }
        ),
        "timeout": _GO_DURATION,
        "retries": _obj(
            {
                "attempts": _int(0),
                "perTryTimeout": _GO_DURATION,
                "retryOn": _STRING,
                "retryRemoteLocalities": _BOOL,
                "retryIgnorePreviousHosts": _BOOL,
                "backoff": _GO_DURATION,
            }
        ),
        "fault": _obj(
            {
                "delay": _obj(
                    {
                        "percent": _int(0, 100),
                        "fixedDelay": _GO_DURATION,
                        "exponentialDelay": _GO_DURATION,
                        "percentage": _ISTIO_PERCENT,
                    }
                ),
                "abort": _obj(
                    {
                        "httpStatus": _int(200, 599),
                        "grpcStatus": _STRING,
                        "http2Error": _STRING,
                        "percentage": _ISTIO_PERCENT,
                    }
                ),
            }
        ),
        "mirror": _ISTIO_DESTINATION,
        "mirrors": _arr(
            _obj(
                {"destination": _ISTIO_DESTINATION, "percentage": _ISTIO_PERCENT},
                required=["destination"],
            )
        ),
        "mirrorPercent": _int(0, 100),
        "mirror_percent": _int(0, 100),
        "mirrorPercentage": _ISTIO_PERCENT,
        "corsPolicy": _obj(
            {
                "allowOrigin": _STRINGS,
                "allowOrigins": _arr(_ISTIO_STRING_MATCH),
                "allowMethods": _STRINGS,
                "allowHeaders": _STRINGS,
                "exposeHeaders": _STRINGS,
                "maxAge": _GO_DURATION,
                "allowCredentials": _BOOL,
                "unmatchedPreflights": _enum("UNSPECIFIED", "FORWARD", "IGNORE"),
            }
        ),
        "headers": _ISTIO_HEADERS,
    }
)
_ISTIO_ROUTE_DESTINATION = _obj(
    {"destination": _ISTIO_DESTINATION, "weight": _ISTIO_WEIGHT}, required=["destination"]
)
_ISTIO_L4_MATCH_FIELDS: dict[str, Schema] = {
    "destinationSubnets": _STRINGS,
    "port": _int(1, 65535),
    "sourceLabels": _STRING_MAP,
    "gateways": _STRINGS,
    "sourceNamespace": _STRING,
}
VIRTUAL_SERVICE_SCHEMA = _top_level(
    "VirtualService",
    _ISTIO_API_VERSIONS,
    _obj(
        {
            # Required here although a *delegate* VirtualService omits it: the harness
            # renders none, and a root VirtualService without hosts matches nothing.
            "hosts": _arr(_str(min_length=1), min_items=1),
            "gateways": _STRINGS,
            "http": _arr(_ISTIO_HTTP_ROUTE),
            "tls": _arr(
                _obj(
                    {
                        "match": _arr(
                            _obj(
                                {**_ISTIO_L4_MATCH_FIELDS, "sniHosts": _arr(_STRING, min_items=1)},
                                required=["sniHosts"],
                            ),
                            min_items=1,
                        ),
                        "route": _arr(_ISTIO_ROUTE_DESTINATION, min_items=1),
                    },
                    required=["match", "route"],
                )
            ),
            "tcp": _arr(
                _obj(
                    {
                        "match": _arr(_obj({**_ISTIO_L4_MATCH_FIELDS, "sourceSubnet": _STRING})),
                        "route": _arr(_ISTIO_ROUTE_DESTINATION, min_items=1),
                    },
                    required=["route"],
                )
            ),
            "exportTo": _STRINGS,
        },
        required=["hosts"],
    ),
)

_ISTIO_TRAFFIC_POLICY_FIELDS: dict[str, Schema] = {
    "loadBalancer": _open_obj(
        {
            "simple": _enum(
                "UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"
            )
        }
    ),
    "connectionPool": _ANY_OBJECT,
    "outlierDetection": _ANY_OBJECT,
    "tls": _open_obj({"mode": _enum("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL")}),
    "tunnel": _ANY_OBJECT,
    "proxyProtocol": _ANY_OBJECT,
    "retryBudget": _ANY_OBJECT,
}
_ISTIO_TRAFFIC_POLICY = _obj(
    {
        **_ISTIO_TRAFFIC_POLICY_FIELDS,
        "portLevelSettings": _arr(
            _obj(
                {
                    "port": _ISTIO_PORT_SELECTOR,
                    **{
                        key: _ISTIO_TRAFFIC_POLICY_FIELDS[key]
                        for key in ("loadBalancer", "connectionPool", "outlierDetection", "tls")
                    },
                }
            )
        ),
    }
)
DESTINATION_RULE_SCHEMA = _top_level(
    "DestinationRule",
    _ISTIO_API_VERSIONS,
    _obj(
        {
            "host": _str(min_length=1),
            "trafficPolicy": _ISTIO_TRAFFIC_POLICY,
            "subsets": _arr(
                _obj(
                    {
                        # istio/istio validateSubsetName: a DNS-1123 label.
                        "name": _str(pattern=_DNS_LABEL, max_length=63, allowed=DNS_LABEL_WORDS),
                        "labels": _STRING_MAP,
                        "trafficPolicy": _ISTIO_TRAFFIC_POLICY,
                    },
                    required=["name"],
                )
            ),
            "exportTo": _STRINGS,
            "workloadSelector": _obj({"matchLabels": _STRING_MAP}),
        },
        required=["host"],
    ),
)

# istio/api networking/v1/gateway.proto: Gateway { servers (required), selector },
# Server { port (required), bind, hosts (required), tls, name, defaultEndpoint },
# Port { number (required), protocol (required), name, targetPort }.
ISTIO_GATEWAY_SCHEMA = _top_level(
    "Gateway",
    _ISTIO_API_VERSIONS,
    _obj(
        {
            "selector": _STRING_MAP,
            "servers": _arr(
                _obj(
                    {
                        "port": _obj(
                            {
                                "number": _int(1, 65535),
                                "protocol": _enum(
                                    "HTTP",
                                    "HTTPS",
                                    "GRPC",
                                    "GRPC-WEB",
                                    "HTTP2",
                                    "MONGO",
                                    "TCP",
                                    "TLS",
                                ),
                                "name": _str(),
                                "targetPort": _int(1, 65535),
                            },
                            required=["number", "protocol"],
                        ),
                        "bind": _str(),
                        "hosts": _arr(_str(min_length=1), min_items=1),
                        "tls": _open_obj(
                            {
                                "httpsRedirect": {"type": "boolean"},
                                "mode": _enum(
                                    "PASSTHROUGH",
                                    "SIMPLE",
                                    "MUTUAL",
                                    "AUTO_PASSTHROUGH",
                                    "ISTIO_MUTUAL",
                                    "OPTIONAL_MUTUAL",
                                ),
                                "credentialName": _str(),
                            }
                        ),
                        "name": _str(),
                        "defaultEndpoint": _str(),
                    },
                    required=["port", "hosts"],
                ),
                min_items=1,
            ),
        },
        required=["servers"],
    ),
)

_HOST_LABEL = r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?"
_ISTIO_HOST = re.compile(rf"(\*|(\*\.)?{_HOST_LABEL}(\.{_HOST_LABEL})*)")
ISTIO_HOST_WORDS = (
    "a DNS name (short name or FQDN, optionally prefixed with '*.'), '*' or an IP address"
)


def _istio_host_problem(host: str, *, allow_star: bool) -> str | None:
    """istio/istio agent.ValidateWildcardDomain (plus IP addresses, accepted for hosts)."""
    if host == "*" and not allow_star:
        return f"got {_show(host)}; must name one service: a DNS name or an IP address"
    if len(host) <= 255 and _ISTIO_HOST.fullmatch(host):
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return f"got {_show(host)}; must be {ISTIO_HOST_WORDS}"
    return None


def _istio_gateway_name_problem(name: str) -> str | None:
    """istio/istio validateGatewayNames: ``mesh``, ``<name>`` or ``<namespace>/<name>``."""
    namespace, slash, gateway = name.partition("/")
    if not slash:
        if len(name) <= 253 and re.fullmatch(_DNS_SUBDOMAIN, name):
            return None
    elif re.fullmatch(_DNS_LABEL, namespace) and re.fullmatch(_DNS_LABEL, gateway):
        return None
    return f"got {_show(name)}; must be 'mesh', '<gateway name>' or '<namespace>/<gateway name>'"


def _virtual_service_rules(obj: Mapping[str, Any]) -> Iterator[Finding]:
    spec = _mapping(obj.get("spec"))
    top_gateways = [g for g in _list(spec.get("gateways")) if isinstance(g, str)]
    applies_to_mesh = not top_gateways or "mesh" in top_gateways

    # istio/istio ValidateVirtualService: "http, tcp or tls must be provided".
    if isinstance(obj.get("spec"), dict) and not any(
        _list(spec.get(key)) for key in ("http", "tcp", "tls")
    ):
        yield ("spec",), "has no routes; must set at least one of http, tcp, tls"
    for i, host in enumerate(_list(spec.get("hosts"))):
        if not isinstance(host, str) or not host:
            continue
        if problem := _istio_host_problem(host, allow_star=True):
            yield ("spec", "hosts", i), problem
        elif host == "*" and applies_to_mesh:
            message = (
                'got "*"; a wildcard host is not allowed for a VirtualService bound to the '
                "mesh (gateways empty or containing 'mesh')"
            )
            yield ("spec", "hosts", i), message
    for i, gateway in enumerate(_list(spec.get("gateways"))):
        if isinstance(gateway, str) and (problem := _istio_gateway_name_problem(gateway)):
            yield ("spec", "gateways", i), problem

    for r, raw_route in enumerate(_list(spec.get("http"))):
        route = _mapping(raw_route)
        base: PathParts = ("spec", "http", r)
        yield from _istio_http_route_conflicts(base, route)
        for m, raw_match in enumerate(_list(route.get("match"))):
            yield from _istio_match_findings(
                (*base, "match", m), _mapping(raw_match), applies_to_mesh
            )
        yield from _istio_destination_findings(base, route.get("route"))
        if "mirror" in route:
            yield from _istio_destination_host((*base, "mirror"), route.get("mirror"))

    for section in ("tls", "tcp"):
        for r, raw_route in enumerate(_list(spec.get(section))):
            yield from _istio_destination_findings(
                ("spec", section, r), _mapping(raw_route).get("route")
            )


def _istio_http_route_conflicts(base: PathParts, route: Mapping[str, Any]) -> Iterator[Finding]:
    """istio/istio validateHTTPRouteConflict: what one http route may combine."""
    forwards = bool(_list(route.get("route")))
    actions = [key for key in ("redirect", "directResponse", "delegate") if key in route]
    if forwards:
        actions.insert(0, "route")
    if not actions:
        yield base, "has no action; must set one of route, redirect, directResponse, delegate"
    elif len(actions) > 1:
        yield base, f"sets {', '.join(actions)}; must set only one of them"
    for action in ("redirect", "directResponse"):
        if action in route:
            for other in ("fault", "rewrite"):
                if other in route:
                    yield (*base, other), f"cannot be combined with {action}"
    if "mirror" in route and "mirrors" in route:
        yield (*base, "mirrors"), "cannot be combined with mirror; use only mirrors"


def _istio_match_findings(
    base: PathParts, match: Mapping[str, Any], applies_to_mesh: bool
) -> Iterator[Finding]:
    for field in ("uri", "scheme", "method", "authority"):
        yield from _istio_string_match_findings(
            (*base, field), match.get(field), empty_prefix_ok=field == "uri"
        )
    for field in ("headers", "withoutHeaders"):
        for header, string_match in _mapping(match.get(field)).items():
            path = (*base, field, header)
            if isinstance(header, str) and header != header.lower():
                message = (
                    f"header name {_show(header)} must be lowercase (Istio HTTPMatchRequest."
                    f"headers: keys are lowercase, '-' separated), e.g. {header.lower()!r}"
                )
                yield path, message
            if field == "withoutHeaders" and _mapping(string_match).get("regex") == "*":
                continue  # `*` means "present", not a regex (validateHTTPRouteMatchRequest)
            yield from _istio_string_match_findings(path, string_match, empty_prefix_ok=False)
    for key, string_match in _mapping(match.get("queryParams")).items():
        yield from _istio_string_match_findings(
            (*base, "queryParams", key), string_match, empty_prefix_ok=False
        )
    source_labels = match.get("sourceLabels")
    yield from _label_findings((*base, "sourceLabels"), source_labels)
    if _mapping(source_labels) and not applies_to_mesh:
        message = (
            "only applies to in-mesh callers, but spec.gateways does not include 'mesh'; "
            "add 'mesh' to spec.gateways or the rule never matches"
        )
        yield (*base, "sourceLabels"), message
    for i, gateway in enumerate(_list(match.get("gateways"))):
        if isinstance(gateway, str) and (problem := _istio_gateway_name_problem(gateway)):
            yield (*base, "gateways", i), problem
    source_namespace = match.get("sourceNamespace")
    if isinstance(source_namespace, str) and (
        problem := _name_problem(source_namespace, _LABEL_NAME)
    ):
        yield (*base, "sourceNamespace"), problem


# istio/istio validateStringRegexp: Envoy's RE2 program size, approximated by length.
ISTIO_MAX_REGEX_LENGTH = 1024


def _istio_string_match_findings(
    path: PathParts, string_match: object, *, empty_prefix_ok: bool
) -> Iterator[Finding]:
    """istio/istio validateStringMatch: non-empty prefix (except uri) and regex."""
    if not isinstance(string_match, dict):
        return
    prefix = string_match.get("prefix")
    if prefix == "" and not empty_prefix_ok:
        yield (*path, "prefix"), "got an empty string; a prefix match must not be empty"
    regex = string_match.get("regex")
    if regex == "":
        yield (*path, "regex"), "got an empty string; a regex match must not be empty"
    elif isinstance(regex, str) and len(regex) > ISTIO_MAX_REGEX_LENGTH:
        message = (
            f"got {len(regex)} characters; must be at most {ISTIO_MAX_REGEX_LENGTH} (RE2 syntax)"
        )
        yield (*path, "regex"), message
    elif isinstance(regex, str) and (problem := re2_problem(regex)):
        yield (*path, "regex"), f"got {regex!r}: Envoy matches regexes with RE2, and {problem}"


def _istio_destination_findings(base: PathParts, destinations: object) -> Iterator[Finding]:
    weighted = _list(destinations)
    for d, raw in enumerate(weighted):
        destination = _mapping(raw).get("destination")
        yield from _istio_destination_host((*base, "route", d, "destination"), destination)
    weights = [_mapping(raw).get("weight", 0) for raw in weighted]
    # istio/istio validateHTTPRouteDestinations: "total destination weight = 0".
    if len(weighted) > 1 and all(isinstance(w, int) and w == 0 for w in weights):
        message = (
            f"all {len(weighted)} destinations have weight 0 (or none); the weights must not "
            "sum to 0: a destination receives weight / sum of weights"
        )
        yield (*base, "route"), message


def _istio_destination_host(path: PathParts, destination: object) -> Iterator[Finding]:
    host = _mapping(destination).get("host")
    if isinstance(host, str) and host and (problem := _istio_host_problem(host, allow_star=False)):
        yield (*path, "host"), problem


def _destination_rule_rules(obj: Mapping[str, Any]) -> Iterator[Finding]:
    spec = _mapping(obj.get("spec"))
    host = spec.get("host")
    if isinstance(host, str) and host and (problem := _istio_host_problem(host, allow_star=True)):
        yield ("spec", "host"), problem
    seen: dict[str, int] = {}
    for i, raw in enumerate(_list(spec.get("subsets"))):
        subset = _mapping(raw)
        name = subset.get("name")
        if isinstance(name, str):
            if name in seen:
                message = (
                    f"duplicate subset name {_show(name)} (also spec.subsets[{seen[name]}]); "
                    "subset names must be unique"
                )
                yield ("spec", "subsets", i, "name"), message
            seen.setdefault(name, i)
        yield from _label_findings(("spec", "subsets", i, "labels"), subset.get("labels"))
    yield from _label_findings(
        ("spec", "workloadSelector", "matchLabels"),
        _mapping(spec.get("workloadSelector")).get("matchLabels"),
    )


# --------------------------------------------------------------------------------------------
# Gateway API v1 (v1.6 standard channel): HTTPRoute, Gateway, GatewayClass
# Source: kubernetes-sigs/gateway-api apis/v1/httproute_types.go, gateway_types.go,
# gatewayclass_types.go, shared_types.go, object_reference_types.go (kubebuilder markers and
# CEL XValidation rules). Fields marked <gateway:experimental> are not in the standard channel.
# --------------------------------------------------------------------------------------------

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_VERSIONS = ("v1",)
_GATEWAY_API_VERSIONS = [f"{GATEWAY_GROUP}/{version}" for version in GATEWAY_VERSIONS]

# shared_types.go limits
MAX_HOSTNAMES = 16  # HTTPRouteSpec.Hostnames MaxItems
MAX_RULES = 16  # HTTPRouteSpec.Rules MaxItems
MAX_MATCHES_PER_RULE = 64  # HTTPRouteRule.Matches MaxItems
MAX_MATCHES_PER_ROUTE = 128  # CEL on HTTPRouteSpec.Rules
MAX_BACKEND_REFS = 16  # HTTPRouteRule.BackendRefs MaxItems
MAX_FILTERS = 16  # HTTPRouteRule.Filters MaxItems
MAX_PARENT_REFS = 32  # CommonRouteSpec.ParentRefs MaxItems
MAX_HEADER_MATCHES = 16  # HTTPRouteMatch.Headers MaxItems
MAX_BACKEND_WEIGHT = 1_000_000  # BackendRef.Weight Maximum
MAX_LISTENERS = 64  # GatewaySpec.Listeners MaxItems

_HOSTNAME = _str(
    pattern=rf"(\*\.)?{_DNS_SUBDOMAIN}",
    min_length=1,
    max_length=253,
    allowed=(
        "a lowercase RFC 1123 hostname, optionally prefixed with a '*.' wildcard label "
        "(no IP addresses, at most 253 characters)"
    ),
)
_PRECISE_HOSTNAME = _str(
    pattern=_DNS_SUBDOMAIN,
    min_length=1,
    max_length=253,
    allowed="a lowercase RFC 1123 hostname (no wildcard, no IP address, at most 253 characters)",
)
_GROUP = _str(
    pattern=f"|{_DNS_SUBDOMAIN}",
    max_length=253,
    allowed="an API group: empty for the core group, else a lowercase DNS subdomain",
)
_KIND = _str(
    pattern=r"[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?",
    min_length=1,
    max_length=63,
    allowed="a kind like 'Service': a letter, then letters, digits or '-' (at most 63)",
)
_OBJECT_NAME = _str(min_length=1, max_length=253)
_NAMESPACE = _str(pattern=_DNS_LABEL, min_length=1, max_length=63, allowed=DNS_LABEL_WORDS)
_SECTION_NAME = _str(
    pattern=_DNS_SUBDOMAIN, min_length=1, max_length=253, allowed=DNS_SUBDOMAIN_WORDS
)
_PORT_NUMBER = _int(1, 65535)
_HEADER_NAME = _str(
    pattern=r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+",
    min_length=1,
    max_length=256,
    allowed="an HTTP header name (RFC 7230 token characters, at most 256)",
)
_GATEWAY_DURATION = _str(
    pattern=r"([0-9]{1,5}(h|m|s|ms)){1,4}",
    allowed="a Gateway API duration (GEP-2257) like 10s, 500ms or 1h30m",
)
_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
_ANNOTATION_KEY = _str(
    pattern=rf"({_DNS_SUBDOMAIN}/)?{_QUALIFIED_NAME_PART}",
    min_length=1,
    max_length=253,
    allowed=QUALIFIED_NAME_WORDS,
)

_PARENT_REF = _obj(
    {
        "group": _GROUP,
        "kind": _KIND,
        "namespace": _NAMESPACE,
        "name": _OBJECT_NAME,
        "sectionName": _SECTION_NAME,
        "port": _PORT_NUMBER,
    },
    required=["name"],
)
_BACKEND_OBJECT_REF_FIELDS: dict[str, Schema] = {
    "group": _GROUP,
    "kind": _KIND,
    "name": _OBJECT_NAME,
    "namespace": _NAMESPACE,
    "port": _PORT_NUMBER,
}
_BACKEND_OBJECT_REF = _obj(_BACKEND_OBJECT_REF_FIELDS, required=["name"])
_SECRET_REF = _obj(
    {"group": _GROUP, "kind": _KIND, "name": _OBJECT_NAME, "namespace": _NAMESPACE},
    required=["name"],
)
_HTTP_HEADER = _obj(
    {"name": _HEADER_NAME, "value": _str(min_length=1, max_length=4096)},
    required=["name", "value"],
)
_HEADER_FILTER = _obj(
    {
        "set": _arr(_HTTP_HEADER, max_items=16),
        "add": _arr(_HTTP_HEADER, max_items=16),
        "remove": _arr(_STRING, max_items=16, unique=True),
    }
)
_PATH_MODIFIER = _obj(
    {
        "type": _enum("ReplaceFullPath", "ReplacePrefixMatch"),
        "replaceFullPath": _str(max_length=1024),
        "replacePrefixMatch": _str(max_length=1024),
    },
    required=["type"],
)
_FILTER_FIELDS: dict[str, str] = {
    # HTTPRouteFilter.Type -> the field that must be set with it (and only with it).
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
    "RequestMirror": "requestMirror",
    "RequestRedirect": "requestRedirect",
    "URLRewrite": "urlRewrite",
    "CORS": "cors",
    "ExtensionRef": "extensionRef",
}
_HTTP_FILTER = _obj(
    {
        "type": _enum(*_FILTER_FIELDS),
        "requestHeaderModifier": _HEADER_FILTER,
        "responseHeaderModifier": _HEADER_FILTER,
        "requestMirror": _obj(
            {
                "backendRef": _BACKEND_OBJECT_REF,
                "percent": _int(0, 100),
                "fraction": _obj(
                    {"numerator": _int(0), "denominator": _int(1)}, required=["numerator"]
                ),
            },
            required=["backendRef"],
        ),
        "requestRedirect": _obj(
            {
                "scheme": _enum("http", "https"),
                "hostname": _PRECISE_HOSTNAME,
                "path": _PATH_MODIFIER,
                "port": _PORT_NUMBER,
                "statusCode": _enum(301, 302, 303, 307, 308),
            }
        ),
        "urlRewrite": _obj({"hostname": _PRECISE_HOSTNAME, "path": _PATH_MODIFIER}),
        "cors": _obj(
            {
                "allowOrigins": _arr(_str(min_length=1, max_length=253), max_items=64, unique=True),
                "allowCredentials": _BOOL,
                "allowMethods": _arr(_enum(*_HTTP_METHODS, "*"), max_items=9, unique=True),
                "allowHeaders": _arr(_HEADER_NAME, max_items=64, unique=True),
                "exposeHeaders": _arr(_HEADER_NAME, max_items=64, unique=True),
                "maxAge": _int(1),
            }
        ),
        "extensionRef": _obj(
            {"group": _GROUP, "kind": _KIND, "name": _OBJECT_NAME}, required=["kind", "name"]
        ),
    },
    required=["type"],
)
_HTTP_ROUTE_RULE = _obj(
    {
        "name": _SECTION_NAME,
        "matches": _arr(
            _obj(
                {
                    "path": _obj(
                        {
                            "type": _enum("Exact", "PathPrefix", "RegularExpression"),
                            "value": _str(max_length=1024),
                        }
                    ),
                    "headers": _arr(
                        _obj(
                            {
                                "type": _enum("Exact", "RegularExpression"),
                                "name": _HEADER_NAME,
                                "value": _str(min_length=1, max_length=4096),
                            },
                            required=["name", "value"],
                        ),
                        max_items=MAX_HEADER_MATCHES,
                    ),
                    "queryParams": _arr(
                        _obj(
                            {
                                "type": _enum("Exact", "RegularExpression"),
                                "name": _HEADER_NAME,
                                "value": _str(min_length=1, max_length=1024),
                            },
                            required=["name", "value"],
                        ),
                        max_items=16,
                    ),
                    "method": _enum(*_HTTP_METHODS),
                }
            ),
            max_items=MAX_MATCHES_PER_RULE,
        ),
        "filters": _arr(_HTTP_FILTER, max_items=MAX_FILTERS),
        "backendRefs": _arr(
            _obj(
                {
                    **_BACKEND_OBJECT_REF_FIELDS,
                    "weight": _int(0, MAX_BACKEND_WEIGHT),
                    "filters": _arr(_HTTP_FILTER, max_items=MAX_FILTERS),
                },
                required=["name"],
            ),
            max_items=MAX_BACKEND_REFS,
        ),
        "timeouts": _obj({"request": _GATEWAY_DURATION, "backendRequest": _GATEWAY_DURATION}),
        "retry": _obj(
            {
                "codes": _arr(_int(400, 599), unique=True),
                "attempts": _int(),
                "backoff": _GATEWAY_DURATION,
            }
        ),
    }
)
HTTP_ROUTE_SCHEMA = _top_level(
    "HTTPRoute",
    _GATEWAY_API_VERSIONS,
    _obj(
        {
            "parentRefs": _arr(_PARENT_REF, max_items=MAX_PARENT_REFS),
            "hostnames": _arr(_HOSTNAME, max_items=MAX_HOSTNAMES),
            "rules": _arr(_HTTP_ROUTE_RULE, min_items=1, max_items=MAX_RULES),
        }
    ),
)

_OBJECT_REFERENCE = _obj(
    {"group": _GROUP, "kind": _KIND, "name": _OBJECT_NAME, "namespace": _NAMESPACE},
    required=["group", "kind", "name"],
)
_FRONTEND_TLS = _obj(
    {
        "validation": _obj(
            {
                "caCertificateRefs": _arr(_OBJECT_REFERENCE, min_items=1, max_items=8),
                "mode": _enum("AllowValidOnly", "AllowInsecureFallback"),
            },
            required=["caCertificateRefs"],
        )
    }
)
_PROTOCOL = _str(
    pattern=(
        r"[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?"
        rf"|{_DNS_SUBDOMAIN}/[A-Za-z0-9]+"
    ),
    min_length=1,
    max_length=255,
    allowed="HTTP, HTTPS, TLS, TCP, UDP or a domain-prefixed protocol like 'example.com/proto'",
)
_LISTENER = _obj(
    {
        "name": _SECTION_NAME,
        "hostname": _HOSTNAME,
        "port": _PORT_NUMBER,
        "protocol": _PROTOCOL,
        "tls": _obj(
            {
                "mode": _enum("Terminate", "Passthrough"),
                "certificateRefs": _arr(_SECRET_REF, max_items=64),
                "options": _map(_str(max_length=4096), keys=_ANNOTATION_KEY, max_entries=16),
            }
        ),
        "allowedRoutes": _obj(
            {
                "namespaces": _obj(
                    {"from": _enum("All", "Selector", "Same"), "selector": _LABEL_SELECTOR}
                ),
                "kinds": _arr(
                    _obj({"group": _GROUP, "kind": _KIND}, required=["kind"]), max_items=8
                ),
            }
        ),
    },
    required=["name", "port", "protocol"],
)
GATEWAY_SCHEMA = _top_level(
    "Gateway",
    _GATEWAY_API_VERSIONS,
    _obj(
        {
            "gatewayClassName": _OBJECT_NAME,
            "listeners": _arr(_LISTENER, min_items=1, max_items=MAX_LISTENERS),
            "addresses": _arr(
                _obj(
                    {
                        "type": _str(
                            pattern=(
                                r"Hostname|IPAddress|NamedAddress|"
                                rf"{_DNS_SUBDOMAIN}/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+"
                            ),
                            min_length=1,
                            max_length=253,
                            allowed="IPAddress, Hostname or a domain-prefixed type",
                        ),
                        "value": _str(max_length=253),
                    }
                ),
                max_items=16,
            ),
            "infrastructure": _obj(
                {
                    "labels": _map(_STRING, max_entries=8),
                    "annotations": _map(
                        _str(max_length=4096), keys=_ANNOTATION_KEY, max_entries=16
                    ),
                    "parametersRef": _obj(
                        {
                            "group": _GROUP,
                            "kind": _KIND,
                            "name": _str(min_length=1, max_length=253),
                        },
                        required=["group", "kind", "name"],
                    ),
                }
            ),
            "allowedListeners": _obj(
                {
                    "namespaces": _obj(
                        {
                            "from": _enum("All", "Selector", "Same", "None"),
                            "selector": _LABEL_SELECTOR,
                        }
                    )
                }
            ),
            "tls": _obj(
                {
                    "backend": _obj({"clientCertificateRef": _SECRET_REF}),
                    "frontend": _obj(
                        {
                            "default": _FRONTEND_TLS,
                            "perPort": _arr(
                                _obj(
                                    {"port": _PORT_NUMBER, "tls": _FRONTEND_TLS},
                                    required=["port", "tls"],
                                ),
                                max_items=64,
                            ),
                        },
                        required=["default"],
                    ),
                }
            ),
        },
        required=["gatewayClassName", "listeners"],
    ),
)
GATEWAY_CLASS_SCHEMA = _top_level(
    "GatewayClass",
    _GATEWAY_API_VERSIONS,
    _obj(
        {
            "controllerName": _str(
                pattern=rf"{_DNS_SUBDOMAIN}/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+",
                min_length=1,
                max_length=253,
                allowed="a domain-prefixed path like 'example.net/gateway-controller'",
            ),
            "parametersRef": _obj(
                {
                    "group": _GROUP,
                    "kind": _KIND,
                    "name": _str(min_length=1, max_length=253),
                    "namespace": _NAMESPACE,
                },
                required=["group", "kind", "name"],
            ),
            "description": _str(max_length=64),
        },
        required=["controllerName"],
    ),
)

# httproute_types.go HTTPPathMatch CEL rules for Exact and PathPrefix values.
_PATH_CHARS = re.compile(r"(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+")
_PATH_FORBIDDEN = ("//", "/./", "/../", "%2f", "%2F", "#")
_PATH_FORBIDDEN_ENDINGS = ("/..", "/.")
_DURATION_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_MILLISECONDS = {"h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1}


def _http_route_rules(obj: Mapping[str, Any]) -> Iterator[Finding]:
    spec = _mapping(obj.get("spec"))
    if isinstance(obj.get("spec"), dict) and not _list(spec.get("parentRefs")):
        message = (
            "is missing or empty; must name at least one parent (a Gateway, or a Service for "
            "mesh routing): a route without parentRefs attaches nowhere and serves no traffic"
        )
        yield ("spec", "parentRefs"), message
    for i, hostname in enumerate(_list(spec.get("hostnames"))):
        yield from _ip_hostname_findings(("spec", "hostnames", i), hostname)
    rules = _list(spec.get("rules"))
    total_matches = sum(len(_list(_mapping(rule).get("matches")) or [None]) for rule in rules)
    if total_matches > MAX_MATCHES_PER_ROUTE:
        message = (
            f"got {total_matches} matches across all rules; must be at most "
            f"{MAX_MATCHES_PER_ROUTE} in one route"
        )
        yield ("spec", "rules"), message
    names: dict[str, int] = {}
    for r, raw_rule in enumerate(rules):
        rule = _mapping(raw_rule)
        base: PathParts = ("spec", "rules", r)
        name = rule.get("name")
        if isinstance(name, str):
            if name in names:
                message = (
                    f"duplicate rule name {_show(name)} (also spec.rules[{names[name]}]); "
                    "rule names must be unique within the route"
                )
                yield (*base, "name"), message
            names.setdefault(name, r)
        yield from _http_rule_findings(base, rule)


def _ip_hostname_findings(path: PathParts, hostname: object) -> Iterator[Finding]:
    """shared_types.go Hostname: "IPs are not allowed" (the CRD pattern alone lets them by)."""
    if isinstance(hostname, str):
        try:
            ipaddress.ip_address(hostname)
        except ValueError:
            return
        yield path, f"got {_show(hostname)}; must be a hostname: IP addresses are not allowed"


def _http_rule_findings(base: PathParts, rule: Mapping[str, Any]) -> Iterator[Finding]:
    # Defaults applied before the CEL rules run: no matches means one PathPrefix "/" match.
    matches = _list(rule.get("matches")) or [{"path": {"type": "PathPrefix", "value": "/"}}]
    for m, raw_match in enumerate(_list(rule.get("matches"))):
        match = _mapping(raw_match)
        yield from _path_match_findings((*base, "matches", m, "path"), match.get("path"))
        for field in ("headers", "queryParams"):
            yield from _duplicate_names((*base, "matches", m, field), match.get(field))

    backend_refs = _list(rule.get("backendRefs"))
    filters = _list(rule.get("filters"))
    yield from _filters_findings((*base, "filters"), filters)
    if backend_refs and any(_mapping(f).get("type") == "RequestRedirect" for f in filters):
        message = (
            "has a RequestRedirect filter and backendRefs; a redirect answers the request "
            "itself: remove one of them"
        )
        yield (*base, "filters"), message
    all_filters = list(filters)
    for b, raw_ref in enumerate(backend_refs):
        ref = _mapping(raw_ref)
        yield from _service_port_findings((*base, "backendRefs", b), ref)
        ref_filters = _list(ref.get("filters"))
        yield from _filters_findings((*base, "backendRefs", b, "filters"), ref_filters)
        all_filters.extend(ref_filters)
    if _uses_replace_prefix_match(all_filters) and not _single_prefix_match(matches):
        message = (
            "must be exactly one PathPrefix match when a filter uses path.type ReplacePrefixMatch"
        )
        yield (*base, "matches"), message
    yield from _timeouts_findings((*base, "timeouts"), rule.get("timeouts"))


def _path_match_findings(path: PathParts, raw: object) -> Iterator[Finding]:
    path_match = _mapping(raw)
    kind = path_match.get("type", "PathPrefix")
    value = path_match.get("value", "/")
    if kind not in ("Exact", "PathPrefix") or not isinstance(value, str):
        return
    where = (*path, "value")
    if not value.startswith("/"):
        yield where, f"got {_show(value)}; a {kind} path must be absolute: start with '/'"
    for forbidden in _PATH_FORBIDDEN:
        if forbidden in value:
            yield where, f"got {_show(value)}; a {kind} path must not contain {forbidden!r}"
    for ending in _PATH_FORBIDDEN_ENDINGS:
        if value.endswith(ending):
            yield where, f"got {_show(value)}; a {kind} path must not end with {ending!r}"
            break
    if value and not _PATH_CHARS.fullmatch(value):
        message = (
            f"got {_show(value)}; a {kind} path may only contain letters, digits, "
            "-/._~!$&'()*+,;=:@ and %XX escapes (use RegularExpression for patterns)"
        )
        yield where, message


def _duplicate_names(path: PathParts, items: object) -> Iterator[Finding]:
    """``+listType=map +listMapKey=name``: the API server rejects duplicate names."""
    seen: dict[str, int] = {}
    for i, raw in enumerate(_list(items)):
        name = _mapping(raw).get("name")
        if isinstance(name, str):
            if name in seen:
                message = (
                    f"duplicate name {_show(name)} (also item {seen[name]}); names must be unique"
                )
                yield (*path, i, "name"), message
            seen.setdefault(name, i)


def _filters_findings(path: PathParts, filters: list[Any]) -> Iterator[Finding]:
    """CEL rules of HTTPRouteFilter (type <-> field) and of the filter lists."""
    counts: dict[str, int] = {}
    for f, raw in enumerate(filters):
        fltr = _mapping(raw)
        kind = fltr.get("type")
        if not isinstance(kind, str):
            continue
        counts[kind] = counts.get(kind, 0) + 1
        for filter_type, field in _FILTER_FIELDS.items():
            if field in fltr and kind != filter_type:
                message = f"is set but type is {kind!r}; only allowed with type {filter_type!r}"
                yield (*path, f, field), message
            elif kind == filter_type and field not in fltr:
                message = f"required field is missing; must be set when type is {kind!r}"
                yield (*path, f, field), message
        for field in ("requestRedirect", "urlRewrite"):
            modifier = _mapping(_mapping(fltr.get(field)).get("path"))
            yield from _path_modifier_findings((*path, f, field, "path"), modifier)
        mirror = _mapping(fltr.get("requestMirror"))
        if "percent" in mirror and "fraction" in mirror:
            yield (*path, f, "requestMirror"), "sets percent and fraction; must set only one"
        fraction = _mapping(mirror.get("fraction"))
        numerator, denominator = fraction.get("numerator"), fraction.get("denominator", 100)
        if isinstance(numerator, int) and isinstance(denominator, int) and numerator > denominator:
            message = (
                f"numerator {numerator} > denominator {denominator}; "
                "must be at most the denominator"
            )
            yield (*path, f, "requestMirror", "fraction"), message
        cors = _mapping(fltr.get("cors"))
        for field in ("allowOrigins", "allowMethods", "allowHeaders"):
            values = _list(cors.get(field))
            if "*" in values and len(values) > 1:
                yield (*path, f, "cors", field), "contains '*' with other values; '*' must be alone"
    for kind in (
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestRedirect",
        "URLRewrite",
        "CORS",
    ):
        if counts.get(kind, 0) > 1:
            yield path, f"has {counts[kind]} {kind} filters; must have at most one"
    if counts.get("RequestRedirect") and counts.get("URLRewrite"):
        yield path, "has both RequestRedirect and URLRewrite filters; must have only one of them"
    for f, raw in enumerate(filters):
        fltr = _mapping(raw)
        for field in ("requestHeaderModifier", "responseHeaderModifier"):
            modifier = _mapping(fltr.get(field))
            for action in ("set", "add"):
                yield from _duplicate_names((*path, f, field, action), modifier.get(action))


def _path_modifier_findings(path: PathParts, modifier: Mapping[str, Any]) -> Iterator[Finding]:
    kind = modifier.get("type")
    for field in ("replaceFullPath", "replacePrefixMatch"):
        wanted = field[0].upper() + field[1:]
        if kind == wanted and field not in modifier:
            message = f"required field is missing; must be set when type is {wanted!r}"
            yield (*path, field), message
        elif field in modifier and kind != wanted:
            message = f"is set but type is {_show(kind)}; only allowed with type {wanted!r}"
            yield (*path, field), message


def _uses_replace_prefix_match(filters: list[Any]) -> bool:
    for raw in filters:
        fltr = _mapping(raw)
        for field in ("requestRedirect", "urlRewrite"):
            modifier = _mapping(_mapping(fltr.get(field)).get("path"))
            if modifier.get("type") == "ReplacePrefixMatch" and "replacePrefixMatch" in modifier:
                return True
    return False


def _single_prefix_match(matches: list[Any]) -> bool:
    if len(matches) != 1:
        return False
    path = _mapping(matches[0]).get("path", {"type": "PathPrefix"})
    return bool(_mapping(path).get("type", "PathPrefix") == "PathPrefix")


def _service_port_findings(path: PathParts, ref: Mapping[str, Any]) -> Iterator[Finding]:
    """object_reference_types.go BackendObjectReference: "Must have port for Service reference"."""
    if ref.get("group", "") == "" and ref.get("kind", "Service") == "Service" and "port" not in ref:
        message = (
            "required field is missing; a backendRef to a Service must set the Service port "
            "(an integer from 1 to 65535)"
        )
        yield (*path, "port"), message


def _milliseconds(duration: object) -> int | None:
    if not isinstance(duration, str) or not re.fullmatch(r"([0-9]{1,5}(h|m|s|ms)){1,4}", duration):
        return None
    return sum(int(n) * _MILLISECONDS[unit] for n, unit in _DURATION_PART.findall(duration))


def _timeouts_findings(path: PathParts, raw: object) -> Iterator[Finding]:
    timeouts = _mapping(raw)
    request = _milliseconds(timeouts.get("request"))
    backend = _milliseconds(timeouts.get("backendRequest"))
    if request and backend is not None and backend > request:
        message = (
            f"got {_show(timeouts['backendRequest'])}; must not be longer than the request "
            f"timeout {_show(timeouts['request'])}"
        )
        yield (*path, "backendRequest"), message


def _gateway_rules(obj: Mapping[str, Any]) -> Iterator[Finding]:
    spec = _mapping(obj.get("spec"))
    names: dict[str, int] = {}
    endpoints: dict[tuple[Any, str, Any], int] = {}
    for i, raw in enumerate(_list(spec.get("listeners"))):
        listener = _mapping(raw)
        path: PathParts = ("spec", "listeners", i)
        name = listener.get("name")
        if isinstance(name, str):
            if name in names:
                message = (
                    f"duplicate listener name {_show(name)} "
                    f"(also spec.listeners[{names[name]}]); "
                    "listener names must be unique within the Gateway"
                )
                yield (*path, "name"), message
            names.setdefault(name, i)
        yield from _ip_hostname_findings((*path, "hostname"), listener.get("hostname"))
        protocol = listener.get("protocol")
        if not isinstance(protocol, str):
            continue
        key = (listener.get("port"), protocol, listener.get("hostname"))
        if key in endpoints:
            message = (
                "has the same port, protocol and hostname as "
                f"spec.listeners[{endpoints[key]}]; "
                "each listener needs a distinct combination"
            )
            yield path, message
        endpoints.setdefault(key, i)
        upper = protocol.upper()
        tls = listener.get("tls")
        if upper in ("HTTP", "TCP", "UDP") and tls is not None:
            yield (*path, "tls"), f"must not be set for protocol {protocol}"
        if upper in ("TCP", "UDP") and listener.get("hostname"):
            yield (*path, "hostname"), f"must not be set for protocol {protocol}"
        tls_config = _mapping(tls)
        mode = tls_config.get("mode", "Terminate")
        if upper == "HTTPS" and tls is not None and mode != "Terminate":
            yield (*path, "tls", "mode"), f"got {_show(mode)}; must be 'Terminate' for HTTPS"
        if upper == "TLS" and not tls_config.get("mode"):
            yield (*path, "tls", "mode"), "required field is missing; must be set for protocol TLS"
        if (
            tls is not None
            and mode == "Terminate"
            and not _list(tls_config.get("certificateRefs"))
            and not _mapping(tls_config.get("options"))
        ):
            message = (
                "mode Terminate needs certificateRefs (or implementation options); set at least one"
            )
            yield (*path, "tls"), message
    yield from _gateway_address_findings(_list(spec.get("addresses")))
    infrastructure = _mapping(spec.get("infrastructure"))
    yield from _label_findings(("spec", "infrastructure", "labels"), infrastructure.get("labels"))
    per_port = _list(_mapping(_mapping(spec.get("tls")).get("frontend")).get("perPort"))
    ports: dict[Any, int] = {}
    for i, raw in enumerate(per_port):
        port = _mapping(raw).get("port")
        if port in ports:
            message = f"duplicate port {port} (also perPort[{ports[port]}]); ports must be unique"
            yield ("spec", "tls", "frontend", "perPort", i, "port"), message
        ports.setdefault(port, i)


def _gateway_address_findings(addresses: list[Any]) -> Iterator[Finding]:
    seen: dict[tuple[Any, Any], int] = {}
    for i, raw in enumerate(addresses):
        address = _mapping(raw)
        kind, value = address.get("type", "IPAddress"), address.get("value")
        path: PathParts = ("spec", "addresses", i, "value")
        if not isinstance(value, str) or not value:
            continue
        if kind == "IPAddress":
            try:
                ipaddress.ip_address(value)
            except ValueError:
                yield path, f"got {_show(value)}; type IPAddress needs an IPv4 or IPv6 address"
        elif kind == "Hostname" and not re.fullmatch(rf"(\*\.)?{_DNS_SUBDOMAIN}", value):
            yield path, f"got {_show(value)}; must be {_HOSTNAME['x-allowed']}"
        if kind in ("IPAddress", "Hostname"):
            if (kind, value) in seen:
                yield path, f"duplicate {kind} {_show(value)}; values must be unique"
            seen.setdefault((kind, value), i)


# --------------------------------------------------------------------------------------------
# Argo Rollouts: Rollout (argoproj.io/v1alpha1), the fields of the canary strategy
# Source: argoproj/argo-rollouts v1.9.1 manifests/crds/rollout-crd.yaml (structural schema,
# so kubectl's strict field validation refuses unknown fields) and
# pkg/apis/rollouts/v1alpha1/types.go. The controller's own rules (validation.go) are not the
# API server's: pytest_canary.rollout_spec has them, the linter reports them.
# --------------------------------------------------------------------------------------------

ARGO_GROUP = "argoproj.io"
ARGO_VERSIONS = ("v1alpha1",)
INT32_MAX = 2**31 - 1
_INT32 = _int(-(2**31), INT32_MAX)
_INT_OR_STRING: Schema = {
    "type": ["integer", "string"],
    "x-allowed": "an integer or a string (int-or-string)",
}
_ARGO_STRING_MATCH = _obj({"exact": _STRING, "prefix": _STRING, "regex": _STRING})
_ARGO_STEP = _obj(
    {
        "setWeight": _INT32,
        "pause": _obj({"duration": _INT_OR_STRING}),
        "setCanaryScale": _obj({"weight": _INT32, "replicas": _INT32, "matchTrafficWeight": _BOOL}),
        "setHeaderRoute": _obj(
            {
                "name": _STRING,
                "match": _arr(
                    _obj(
                        {"headerName": _STRING, "headerValue": _ARGO_STRING_MATCH},
                        required=["headerName", "headerValue"],
                    )
                ),
            }
        ),
        "setMirrorRoute": _obj(
            {
                "name": _STRING,
                "match": _arr(
                    _obj(
                        {
                            "method": _ARGO_STRING_MATCH,
                            "path": _ARGO_STRING_MATCH,
                            "headers": _map(_ARGO_STRING_MATCH),
                        }
                    )
                ),
                "percentage": _INT32,
            },
            required=["name"],
        ),
        # Content not modelled, only type-checked (see UNCHECKED_SUBTREES).
        "analysis": _ANY_OBJECT,
        "experiment": _ANY_OBJECT,
        "plugin": _ANY_OBJECT,
    }
)
_ARGO_VIRTUAL_SERVICE = _obj(
    {
        "name": _STRING,
        "routes": _STRINGS,
        "tlsRoutes": _arr(_ANY_OBJECT),
        "tcpRoutes": _arr(_ANY_OBJECT),
    },
    required=["name"],
)
_ARGO_TRAFFIC_ROUTING = _obj(
    {
        "nginx": _obj(
            {
                "annotationPrefix": _STRING,
                "stableIngress": _STRING,
                "stableIngresses": _STRINGS,
                "additionalIngressAnnotations": _STRING_MAP,
                "canaryIngressAnnotations": _STRING_MAP,
            }
        ),
        "istio": _obj(
            {
                "virtualService": _ARGO_VIRTUAL_SERVICE,
                "virtualServices": _arr(_ARGO_VIRTUAL_SERVICE),
                "destinationRule": _obj(
                    {
                        "name": _STRING,
                        "canarySubsetName": _STRING,
                        "stableSubsetName": _STRING,
                        "additionalSubsetNames": _STRINGS,
                    },
                    required=["name", "canarySubsetName", "stableSubsetName"],
                ),
            }
        ),
        "managedRoutes": _arr(_obj({"name": _STRING}, required=["name"])),
        "maxTrafficWeight": _INT32,
        **{
            router: _ANY_OBJECT
            for router in ("alb", "smi", "ambassador", "appMesh", "traefik", "apisix", "plugins")
        },
    }
)
_ARGO_CANARY = _obj(
    {
        "canaryService": _STRING,
        "stableService": _STRING,
        "steps": _arr(_ARGO_STEP),
        "trafficRouting": _ARGO_TRAFFIC_ROUTING,
        "maxSurge": _INT_OR_STRING,
        "maxUnavailable": _INT_OR_STRING,
        "scaleDownDelaySeconds": _INT32,
        "scaleDownDelayRevisionLimit": _INT32,
        "abortScaleDownDelaySeconds": _INT32,
        "dynamicStableScale": _BOOL,
        "minPodsPerReplicaSet": _INT32,
        **{
            key: _ANY_OBJECT
            for key in (
                "analysis",
                "antiAffinity",
                "canaryMetadata",
                "stableMetadata",
                "pingPong",
                "replicaProgressThreshold",
            )
        },
    }
)
ROLLOUT_SCHEMA = _top_level(
    "Rollout",
    [f"{ARGO_GROUP}/{version}" for version in ARGO_VERSIONS],
    _obj(
        {
            # rollout-crd.yaml: int32 with no minimum; a negative count is the controller's
            # InvalidSpec (dataplane/argo_rollouts/config.py spec_problems).
            "replicas": _INT32,
            "selector": _LABEL_SELECTOR,
            "template": {"$ref": _K8S_DEFS + "io.k8s.api.core.v1.PodTemplateSpec"},
            "workloadRef": _ANY_OBJECT,
            "minReadySeconds": _INT32,
            "revisionHistoryLimit": _INT32,
            "paused": _BOOL,
            "progressDeadlineSeconds": _INT32,
            "progressDeadlineAbort": _BOOL,
            "restartAt": _STRING,
            "rollbackWindow": _obj({"revisions": _INT32}),
            "analysis": _ANY_OBJECT,
            "strategy": _obj({"canary": _ARGO_CANARY, "blueGreen": _ANY_OBJECT}),
        }
    ),
)


def _rollout_rules(obj: Mapping[str, Any]) -> Iterator[Finding]:
    """Label syntax of a Rollout's pod template: the CRD's schema stores any string, but
    the ReplicaSet the controller creates from it would be refused by the API server (and
    the controller checks it first, validation.go ValidateRolloutSpec). What only the
    controller refuses (a negative replica count, a missing or empty selector, a selector
    that does not select the template) is its ``InvalidSpec``, in the model
    (``dataplane/argo_rollouts/config.py`` ``spec_problems``), reported by the linter."""
    spec = _mapping(obj.get("spec"))
    template_meta = _mapping(_mapping(spec.get("template")).get("metadata"))
    yield from _label_findings(
        ("spec", "template", "metadata", "labels"), template_meta.get("labels")
    )


# --------------------------------------------------------------------------------------------
# The table of custom kinds
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CustomKind:
    versions: tuple[str, ...]
    schema: Schema
    rules: tuple[Rule, ...]


def _no_rules(obj: Mapping[str, Any]) -> Iterator[Finding]:
    return iter(())


_CUSTOM_KINDS: dict[tuple[str, str], _CustomKind] = {
    (ISTIO_GROUP, "VirtualService"): _CustomKind(
        ISTIO_VERSIONS, VIRTUAL_SERVICE_SCHEMA, (_virtual_service_rules,)
    ),
    (ISTIO_GROUP, "DestinationRule"): _CustomKind(
        ISTIO_VERSIONS, DESTINATION_RULE_SCHEMA, (_destination_rule_rules,)
    ),
    (ISTIO_GROUP, "Gateway"): _CustomKind(ISTIO_VERSIONS, ISTIO_GATEWAY_SCHEMA, (_no_rules,)),
    (GATEWAY_GROUP, "HTTPRoute"): _CustomKind(
        GATEWAY_VERSIONS, HTTP_ROUTE_SCHEMA, (_http_route_rules,)
    ),
    (GATEWAY_GROUP, "Gateway"): _CustomKind(GATEWAY_VERSIONS, GATEWAY_SCHEMA, (_gateway_rules,)),
    (GATEWAY_GROUP, "GatewayClass"): _CustomKind(
        GATEWAY_VERSIONS, GATEWAY_CLASS_SCHEMA, (_no_rules,)
    ),
    (ARGO_GROUP, "Rollout"): _CustomKind(ARGO_VERSIONS, ROLLOUT_SCHEMA, (_rollout_rules,)),
}
