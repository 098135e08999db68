"""How a response says which version of an app answered it: the *version readers*.

The sample app sends ``X-App-Version``; your own app may put its version in another
header, in a JSON field of its body, or somewhere in a text body. An :class:`AppImage`
(``pytest_canary.spec``) carries one reader in ``version_from``; the sampler classifies
every response with the reader's :meth:`classifier`.

Example:
    >>> from pytest_canary import AppImage
    >>> app = AppImage("registry.example/shop:{version}", port=8080, health="/healthz",
    ...                version_from=VersionFromJson("build.version"))
    >>> app.version_from.classifier()(200, {}, b'{"build": {"version": "2.0"}}')
    '2.0'

Guarantee: a reader raises nothing but :class:`UnreadableVersion` on a response; an answer
without a version gives ``None``, which the sampler counts as an error ("HTTP 200 without a
version"), and an ambiguous one (two different version headers) or one the reader could not
search in time raises :class:`UnreadableVersion`, counted as an error with its reason. Neither
is ever counted as a version.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import regex

from pytest_canary.errors import CanaryConfigError

# Same shape as ``pytest_canary.traffic.Classifier`` (status, headers, body) -> version or
# None; spelled out here because traffic sits above this module in the layers.
VersionClassifier = Callable[[int, Mapping[str, str], bytes], "str | None"]

# HTTP header field name (RFC 9110 token).
_HTTP_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Longest version a reader returns: a Kubernetes label value is at most 63 characters.
_MAX_VERSION = 63
# Seconds a body regex may search one answer: a pattern that backtracks catastrophically
# on some body costs at most this, never a frozen test.
REGEX_TIME_LIMIT = 0.1


class UnreadableVersion(Exception):
    """An answer whose version cannot be told; the message is the reason the sampler counts
    it under (e.g. "two different X-App-Version headers")."""


def _clean(value: object) -> str | None:
    """A found value as a version string, or None when it cannot be one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > _MAX_VERSION:
        return None
    return value


@dataclass(frozen=True)
class VersionFromHeader:
    """The version is the value of a response header (the sample app's ``X-App-Version``).

    Args:
        header: header name, matched case-insensitively.
    """

    header: str = "X-App-Version"

    def classifier(self) -> VersionClassifier:
        """(status, headers, body) -> the header's value, or None when it is absent."""
        header = self.header

        def classify(status: int, headers: Mapping[str, str], body: bytes) -> str | None:
            getall = getattr(headers, "getall", None)
            if getall is not None:  # a multidict: every occurrence of the header
                raw = list(getall(header, []))
            else:  # plain dicts (tests, other clients) are case-sensitive
                lowered = header.lower()
                raw = [v for k, v in headers.items() if k.lower() == lowered]
            # RFC 9110 5.3: "1.0, 2.0" in one field line means the same as two lines (and a
            # client or proxy may join them so): two versions, not a version "1.0, 2.0".
            # Empty list elements are ignored (RFC 9110 5.6.1).
            values = [
                _clean(part)
                for v in raw
                for part in (
                    ([p for p in v.split(",") if p.strip()] or [v]) if isinstance(v, str) else [v]
                )
            ]
            distinct = set(values)
            if len(distinct) > 1:
                raise UnreadableVersion(f"two different {header} headers")
            return values[0] if values else None

        return classify

    def check(self, where: str) -> None:
        """Raise :class:`CanaryConfigError` naming ``where`` if the header name is invalid."""
        if not isinstance(self.header, str) or not _HTTP_TOKEN.match(self.header):
            raise CanaryConfigError(
                f"{where}.header={self.header!r}: must be an HTTP header name (letters, digits "
                "and - such as 'X-App-Version')"
            )

    def describe(self) -> str:
        """One line for messages: where the version is read."""
        return f"response header {self.header}"


@dataclass(frozen=True)
class VersionFromJson:
    """The version is a field of a JSON body, named by a dotted path.

    Args:
        path: dotted path from the top-level object, e.g. ``"version"`` or
            ``"build.info.version"``; a segment of digits indexes a list (``"items.0.v"``).
            Numbers are read as their text (``2`` -> ``"2"``).
    """

    path: str = "version"

    @property
    def segments(self) -> tuple[str, ...]:
        """The path split on dots."""
        return tuple(self.path.split("."))

    def classifier(self) -> VersionClassifier:
        """(status, headers, body) -> the field's value, or None when the body is not JSON
        or the field is missing."""
        segments = self.segments

        def classify(status: int, headers: Mapping[str, str], body: bytes) -> str | None:
            try:
                node: Any = json.loads(body)
            except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting
                return None
            for segment in segments:
                if isinstance(node, dict) and segment in node:
                    node = node[segment]
                elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
                    node = node[int(segment)]
                else:
                    return None
            return _clean(node)

        return classify

    def check(self, where: str) -> None:
        """Raise :class:`CanaryConfigError` naming ``where`` if the path is not usable."""
        if not isinstance(self.path, str) or not self.path or "" in self.path.split("."):
            raise CanaryConfigError(
                f"{where}.path={self.path!r}: must be a dotted path of non-empty field names, "
                "such as 'version' or 'build.version'"
            )

    def describe(self) -> str:
        """One line for messages: where the version is read."""
        return f"JSON field {self.path}"


@dataclass(frozen=True)
class VersionFromRegex:
    """The version is found by a regular expression searched in the body (decoded as UTF-8).

    Args:
        pattern: a Python regular expression. The version is its group named ``version``
            if it has one, else its first group, else the whole match. Example:
            ``r"Version: (\\S+)"`` or ``r"<meta name=version content=\"(?P<version>[^\"]+)\">"``.
    """

    pattern: str

    def classifier(self) -> VersionClassifier:
        """(status, headers, body) -> the captured version, or None when nothing matches.

        The search runs with the ``regex`` engine (``re``'s syntax) and a time limit of
        :data:`REGEX_TIME_LIMIT` seconds per answer.
        """
        compiled = regex.compile(self.pattern)
        group: int | str = (
            "version" if "version" in compiled.groupindex else (1 if compiled.groups else 0)
        )

        def classify(status: int, headers: Mapping[str, str], body: bytes) -> str | None:
            try:
                found = compiled.search(
                    body.decode("utf-8", errors="replace"), timeout=REGEX_TIME_LIMIT
                )
            except TimeoutError:
                raise UnreadableVersion(
                    f"body regex took over {REGEX_TIME_LIMIT:g}s (catastrophic backtracking)"
                ) from None
            return _clean(found.group(group)) if found else None

        return classify

    def check(self, where: str) -> None:
        """Raise :class:`CanaryConfigError` naming ``where`` if the pattern is not usable."""
        if not isinstance(self.pattern, str) or not self.pattern:
            raise CanaryConfigError(
                f"{where}.pattern={self.pattern!r}: must be a non-empty regular expression "
                "that captures the version, e.g. r'Version: (\\S+)'"
            )
        try:
            compiled = regex.compile(self.pattern)
        except (regex.error, OverflowError, RecursionError, ValueError) as exc:
            raise CanaryConfigError(
                f"{where}.pattern={self.pattern!r}: is not a valid regular expression ({exc})"
            ) from None
        if compiled.match("", timeout=REGEX_TIME_LIMIT) is not None and compiled.groups == 0:
            raise CanaryConfigError(
                f"{where}.pattern={self.pattern!r}: matches the empty string, so it cannot "
                "find a version; capture the version in a group, e.g. r'Version: (\\S+)'"
            )

    def describe(self) -> str:
        """One line for messages: where the version is read."""
        return f"body regex {self.pattern!r}"


VersionReader = VersionFromHeader | VersionFromJson | VersionFromRegex
"""Any of the readers an :class:`AppImage` accepts as ``version_from``."""

VERSION_READERS: tuple[type, ...] = (VersionFromHeader, VersionFromJson, VersionFromRegex)

__all__ = [
    "REGEX_TIME_LIMIT",
    "VERSION_READERS",
    "UnreadableVersion",
    "VersionClassifier",
    "VersionFromHeader",
    "VersionFromJson",
    "VersionFromRegex",
    "VersionReader",
]
