"""Interned, hashable attribute sets built once and reused on the hot path."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import MappingProxyType

from opentelemetry.util.types import AttributeValue

AttrValue = str | bool | int | float


class AttrSet:
    """An immutable attribute set with a cached hash.

    Build one per distinct combination (at decoration time or lazily through
    :func:`intern_attrs`) and pass the same object on every call: aggregation keys on
    it without re-hashing dicts per message.
    """

    __slots__ = ("_hash", "_key", "mapping")

    def __init__(self, attributes: Mapping[str, AttributeValue]) -> None:
        items = tuple(sorted(attributes.items()))
        self._key = items
        self._hash = hash(items)
        self.mapping: Mapping[str, AttributeValue] = MappingProxyType(dict(items))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AttrSet) and other._key == self._key

    def __repr__(self) -> str:
        return f"AttrSet({dict(self.mapping)!r})"


_interned: dict[tuple[tuple[str, AttributeValue], ...], AttrSet] = {}
_intern_lock = threading.Lock()


def intern_attrs(attributes: Mapping[str, AttributeValue]) -> AttrSet:
    """Return the canonical :class:`AttrSet` for ``attributes``.

    Meant for bounded sets of combinations only; callers with unbounded attribute
    values must cap cardinality first.
    """
    key = tuple(sorted(attributes.items()))
    found = _interned.get(key)
    if found is not None:
        return found
    with _intern_lock:
        return _interned.setdefault(key, AttrSet(attributes))
