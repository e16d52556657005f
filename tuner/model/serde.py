"""Snapshots to and from plain data (JSON), for golden tests and recorded cases (pure)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType
from typing import Any

from tuner.model.snapshot import Snapshot

_SCALARS = frozenset({str, int, float, bool, type(None)})
_FIELDS: dict[type, tuple[str, ...]] = {}
"""Field names per dataclass: ``dataclasses.fields`` per value cost most of a 10,000-peer
``status --format json``."""


def to_data(value: Any) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    names = _FIELDS.get(kind)
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        return {name: to_data(getattr(value, name)) for name in names}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [to_data(v) for v in value]
    return value


def from_data(cls: Any, data: Any) -> Any:  # noqa: PLR0911 - one return per type shape
    """Rebuild a value of type ``cls`` (dataclasses, tuples, mappings, enums, optionals)."""
    origin = typing.get_origin(cls)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(cls) if a is not type(None)]
        if data is None:
            return None
        return from_data(args[0], data)
    if origin is tuple:
        (item, *_rest) = typing.get_args(cls)
        return tuple(from_data(item, v) for v in data)
    if origin in (Mapping, dict, typing.Mapping) or cls is Mapping:
        key, item = typing.get_args(cls) or (str, Any)
        # JSON keys are strings; a Mapping[int, ...] (thread ids) gets its ints back.
        cast: Any = int if key is int else str
        return MappingProxyType({cast(k): from_data(item, v) for k, v in data.items()})
    if isinstance(cls, type) and issubclass(cls, Enum):
        return cls(data)
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        kwargs = {
            f.name: from_data(hints[f.name], data[f.name])
            for f in dataclasses.fields(cls)
            if f.name in data
        }
        factory: Any = cls
        return factory(**kwargs)
    if cls is float and isinstance(data, int):
        return float(data)
    return data


def snapshot_from_data(data: Mapping[str, Any]) -> Snapshot:
    snapshot: Snapshot = from_data(Snapshot, data)
    return snapshot
