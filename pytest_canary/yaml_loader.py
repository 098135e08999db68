"""The one loader for YAML (and JSON) written by users: bounded, strict and fast.

Every manifest a user hands us (``canary.apply``, ``canary.lint``, ``lint_paths``, an
add-on file) is read here, and nothing else in the package parses user YAML:

- **Bounded while loading.** Input size, document count, nesting depth, and the *expanded*
  size — nodes and scalar bytes counted as if every alias were copied where it is used — are
  charged as the parser goes, so an alias bomb (a few hundred bytes that expand to billions
  of nodes) fails at once with an error naming the file and line, before anything downstream
  (schema validation, copies, JSON) could expand it. A recursive alias is refused the same way.
- **Strict.** A key given twice in one mapping is an error naming both lines: YAML keeps the
  last value silently (a second ``annotations:`` would drop the first), while
  ``kubectl apply`` refuses the manifest ("key already set in map" from sigs.k8s.io/yaml, or
  the API server's strict field validation, the default since Kubernetes 1.25).
- **Fast.** Events come from libyaml (PyYAML's C parser) where installed; the composer that
  charges the limits runs on those events.

:func:`check_bounded` gives the same guarantees for objects built in Python (cycles, depth,
expanded size), for the public functions that take objects rather than text.

Example:
    >>> load_all("a: 1\\n---\\nb: [x, y]\\n", "inline")
    [{'a': 1}, {'b': ['x', 'y']}]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, ScalarEvent
from yaml.nodes import MappingNode, Node, ScalarNode
from yaml.resolver import Resolver

from pytest_canary.errors import CanaryConfigError

MIB = 1024 * 1024
MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class YamlLimits:
    """The bounds of one load (all files of one ``canary.apply`` together).

    Attributes:
        max_bytes: input size. The API server refuses a request over 3 MiB; this leaves room
            for a folder of them.
        max_documents: documents (``---``).
        max_nodes: nodes after alias expansion. An app's manifests have a few thousand;
            checking 50,000 against the schemas takes about two seconds.
        max_scalar_bytes: bytes of scalars after alias expansion.
        max_depth: nesting depth (Kubernetes objects nest a few tens deep).
    """

    max_bytes: int = 4 * MIB
    max_documents: int = 500
    max_nodes: int = 50_000
    max_scalar_bytes: int = 16 * MIB
    max_depth: int = 100


DEFAULT_LIMITS = YamlLimits()


@dataclass
class YamlBudget:
    """What the loads of one operation have used so far, against its :class:`YamlLimits`."""

    limits: YamlLimits = DEFAULT_LIMITS
    bytes: int = 0
    documents: int = 0
    nodes: int = 0
    scalar_bytes: int = 0
    files: list[str] = field(default_factory=list)


class _LimitExceeded(yaml.YAMLError):
    """Raised inside the composer; turned into a :class:`CanaryConfigError` by ``load_all``."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class _BoundedComposer(Composer):
    """PyYAML's composer, charging every node (and every alias's expansion) to a budget."""

    budget: YamlBudget
    peek_event: Any  # from the parser the loader class mixes in

    def _start(self, budget: YamlBudget) -> None:
        self.budget = budget
        self._depth = 0
        # anchor -> (nodes, scalar bytes) of the anchored node, once it is complete.
        self._expanded: dict[str, tuple[int, int]] = {}

    def _charge(self, nodes: int, scalar_bytes: int, mark: Any) -> None:
        budget, limits = self.budget, self.budget.limits
        budget.nodes += nodes
        budget.scalar_bytes += scalar_bytes
        if budget.nodes > limits.max_nodes:
            raise _LimitExceeded(
                f"more than {limits.max_nodes} nodes once aliases are expanded (an alias bomb?)",
                mark,
            )
        if budget.scalar_bytes > limits.max_scalar_bytes:
            raise _LimitExceeded(
                f"more than {limits.max_scalar_bytes} bytes of values once aliases are expanded",
                mark,
            )

    def compose_document(self) -> Node | None:
        budget = self.budget
        budget.documents += 1
        if budget.documents > budget.limits.max_documents:
            raise _LimitExceeded(
                f"more than {budget.limits.max_documents} documents",
                self.peek_event().start_mark,
            )
        self._expanded = {}
        node: Node | None = super().compose_document()
        return node

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            anchor = event.anchor
            if anchor in self.anchors and anchor not in self._expanded:
                raise _LimitExceeded(
                    f"alias *{anchor} refers to a node that contains it (a recursive "
                    "structure, which no Kubernetes object can be)",
                    event.start_mark,
                )
            node: Node | None = super().compose_node(parent, index)
            nodes, scalar_bytes = self._expanded.get(str(anchor), (0, 0))
            self._charge(nodes, scalar_bytes, event.start_mark)
            return node
        self._depth += 1
        if self._depth > self.budget.limits.max_depth:
            raise _LimitExceeded(
                f"nested more than {self.budget.limits.max_depth} levels deep", event.start_mark
            )
        nodes_before, bytes_before = self.budget.nodes, self.budget.scalar_bytes
        value = event.value if isinstance(event, ScalarEvent) else ""
        self._charge(1, len(value), event.start_mark)
        node = super().compose_node(parent, index)
        self._depth -= 1
        if event.anchor is not None:
            self._expanded[event.anchor] = (
                self.budget.nodes - nodes_before,
                self.budget.scalar_bytes - bytes_before,
            )
        return node

    def compose_mapping_node(self, anchor: Any) -> MappingNode:
        node: MappingNode = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], Any] = {}
        for key, _ in node.value:
            if not isinstance(key, ScalarNode) or key.tag == MERGE_TAG:
                continue
            first = seen.setdefault((key.tag, key.value), key.start_mark)
            if first is not key.start_mark:
                line = "?" if first is None else first.line + 1
                raise _LimitExceeded(
                    f"key {key.value!r} is given twice in one mapping (first at line "
                    f"{line}); YAML would keep only the last one and silently drop "
                    "the first, and kubectl refuses it",
                    key.start_mark,
                )
        return node


_HAS_LIBYAML = bool(getattr(yaml, "__with_libyaml__", False))


def _init_loader(self: Any, stream: str, budget: YamlBudget) -> None:
    if _HAS_LIBYAML:
        from yaml._yaml import CParser

        CParser.__init__(self, stream)
    else:  # pragma: no cover - PyYAML built without libyaml
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
    Composer.__init__(self)
    SafeConstructor.__init__(self)
    Resolver.__init__(self)
    self._start(budget)


def _loader_class() -> type:
    """libyaml's parser (or PyYAML's), the bounded composer, the safe constructor."""
    parser: tuple[type, ...]
    if _HAS_LIBYAML:
        from yaml._yaml import CParser

        parser = (CParser,)
    else:  # pragma: no cover
        parser = (yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser)
    bases = (_BoundedComposer, *parser, SafeConstructor, Resolver)
    return type("BoundedLoader", bases, {"__init__": _init_loader})


_Loader: Any = _loader_class()


def uses_libyaml() -> bool:
    """Whether loading runs on libyaml (PyYAML's C extension)."""
    return _HAS_LIBYAML


def load_all(text: str, source: str, budget: YamlBudget | None = None) -> list[Any]:
    """Every document of ``text`` (``None`` for an empty one), within ``budget``.

    Args:
        text: the YAML (or JSON) text.
        source: what to call it in messages (a file name, "kustomize output of DIR").
        budget: shared by the loads of one operation (defaults to a fresh one).

    Raises:
        CanaryConfigError: ``"<source>, document <n>: ... at line <l>, column <c>: ..."``
            for YAML that does not parse, a limit passed or a duplicate key.
    """
    budget = budget if budget is not None else YamlBudget()
    _charge_bytes(budget, len(text.encode("utf-8", errors="surrogatepass")), source)
    documents: list[Any] = []
    loader = _Loader(text, budget)
    try:
        while loader.check_node():
            node = loader.get_node()
            documents.append(None if node is None else loader.construct_document(node))
    except yaml.YAMLError as exc:
        raise _config_error(exc, source, len(documents) + 1) from None
    except (ValueError, TypeError, OverflowError) as exc:
        # A value the safe constructor cannot build: an integer of more than 4300 digits,
        # a timestamp with month 13, ...
        raise CanaryConfigError(
            f"{source}, document {len(documents) + 1}: a value cannot be read: {exc}"
        ) from None
    except RecursionError:  # pragma: no cover - max_depth keeps the composer shallow
        raise CanaryConfigError(
            f"{source}, document {len(documents) + 1}: nested too deeply"
        ) from None
    finally:
        loader.dispose()
    return documents


def read_text(path: Path, budget: YamlBudget) -> str:
    """The text of a file, refused before reading when it would pass ``budget``'s size.

    Raises:
        CanaryConfigError: the file cannot be read, is not UTF-8, or is too large.
    """
    try:
        size = path.stat().st_size
        _charge_bytes(budget, size, str(path), charge=False)
        with path.open("rb") as handle:
            raw = handle.read(budget.limits.max_bytes - budget.bytes + 1)
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CanaryConfigError(f"manifests file {str(path)!r} cannot be read: {exc}") from None


def _charge_bytes(budget: YamlBudget, size: int, source: str, *, charge: bool = True) -> None:
    limit = budget.limits.max_bytes
    if budget.bytes + size > limit:
        before = f" after {budget.bytes} bytes of earlier files" if budget.bytes else ""
        raise CanaryConfigError(
            f"{source}: {size} bytes{before} is more than the {limit} bytes of manifests one "
            "call reads; split the set, or check that the path holds only manifests"
        )
    if charge:
        budget.bytes += size


def _config_error(exc: yaml.YAMLError, source: str, document: int) -> CanaryConfigError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if isinstance(exc, _LimitExceeded):
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return CanaryConfigError(f"{source}, document {document}{where}: {problem}")
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return CanaryConfigError(f"{source}, document {document}: not valid YAML{where}: {problem}")


def check_bounded(value: object, where: str, limits: YamlLimits = DEFAULT_LIMITS) -> None:
    """Refuse an object built in Python that no manifest could be: one that contains itself,
    nests deeper than ``limits.max_depth`` or expands (shared parts counted each time they
    are used) to more than ``limits.max_nodes`` nodes. Linear in the distinct objects.

    Raises:
        CanaryConfigError: naming ``where`` and the bound.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()
    # Iterative post-order walk: (object, depth, children pushed?)
    stack: list[tuple[object, int, bool]] = [(value, 1, False)]
    while stack:
        item, depth, expanded = stack.pop()
        if not isinstance(item, (Mapping, list, tuple)):
            continue
        key = id(item)
        children = list(item.keys()) + list(item.values()) if isinstance(item, Mapping) else item
        if expanded:
            active.discard(key)
            size = 1 + sum(
                sizes.get(id(child), 1) if isinstance(child, (Mapping, list, tuple)) else 1
                for child in children
            )
            if size > limits.max_nodes:
                raise CanaryConfigError(
                    f"{where}: more than {limits.max_nodes} nodes once shared parts are "
                    "counted where they are used"
                )
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in active:
            raise CanaryConfigError(
                f"{where}: contains itself (a recursive structure, which no Kubernetes object "
                "can be)"
            )
        if depth > limits.max_depth:
            raise CanaryConfigError(f"{where}: nested more than {limits.max_depth} levels deep")
        active.add(key)
        stack.append((item, depth, True))
        stack.extend((child, depth + 1, False) for child in children)
