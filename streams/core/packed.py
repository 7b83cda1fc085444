"""Partial aggregates kept packed: msgpack bytes at rest, decoded only while they change.

Both stages hold one aggregate per (group, bucket) and source partition: stage 1 the partials it
computes (:mod:`streams.core.ticket_engine`), stage 2 the latest partial of every source and
the merge of each bucket (:mod:`streams.core.merge`). With open tickets spread over many
buckets that is one to two of each per open ticket, and a decoded
:class:`~streams.core.aggregate.WindowAggregate` (30 fields, two sketch dicts) costs ~400 bytes
of heap, a :class:`~streams.core.aggregate.LiveAggregate` ~280; packed, the same partials are
their msgpack maps of the fields that are not zero: ~50 and ~70 bytes. (bench/RESULTS-pipeline.md,
"Memory per open ticket", has the breakdown.)

:class:`PackedAggregates` is a mapping key -> aggregate that stores that msgpack. An aggregate
taken with :meth:`PackedAggregates.open` stays decoded (and is changed in place) until the next
:meth:`PackedAggregates.pack`: stage 1 opens the partials an event changes and packs them when
it flushes, so a partial changed by many events between two flushes is decoded and encoded
once. The encoding is the wire format of the partials (the same structs, the same encoder).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

import msgspec

from streams.core.aggregate import LiveAggregate, WindowAggregate

K = TypeVar("K", bound=Hashable)
A = TypeVar("A", WindowAggregate, LiveAggregate)

_ENCODER = msgspec.msgpack.Encoder()


class PackedAggregates(Generic[K, A]):
    """Aggregates by key, packed as msgpack except those opened since the last :meth:`pack`.

    An empty aggregate is never stored: :meth:`put` and :meth:`pack` drop it.
    """

    __slots__ = ("_decoder", "_kind", "_opened", "_values")

    def __init__(self, kind: type[A]) -> None:
        self._kind: type[A] = kind
        self._decoder: msgspec.msgpack.Decoder[A] = msgspec.msgpack.Decoder(kind)
        self._values: dict[K, A | bytes] = {}
        self._opened: list[K] = []  # keys decoded by open() since the last pack()

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[K]:
        return iter(self._values)

    def _decoded(self, value: A | bytes) -> A:
        return self._decoder.decode(value) if isinstance(value, bytes) else value

    def get(self, key: K) -> A | None:
        """The aggregate of ``key`` (a decoded copy unless it is open), None if there is none."""
        value = self._values.get(key)
        return None if value is None else self._decoded(value)

    def items(self) -> Iterator[tuple[K, A]]:
        for key, value in list(self._values.items()):
            yield key, self._decoded(value)

    def values(self) -> Iterator[A]:
        for _, aggregate in self.items():
            yield aggregate

    def open(self, key: K) -> A:
        """The aggregate of ``key`` to change in place (a new empty one if there is none); it
        stays decoded until :meth:`pack`."""
        value = self._values.get(key)
        if value is None or isinstance(value, bytes):
            value = self._kind() if value is None else self._decoder.decode(value)
            self._values[key] = value
            self._opened.append(key)
        return value

    def put_open(self, key: K, aggregate: A) -> None:
        """Store ``aggregate`` as if opened (decoded until :meth:`pack`; dropped there if
        empty): for a rebuild, whose partials the next flush sends and packs anyway."""
        self._values[key] = aggregate
        self._opened.append(key)

    def put(self, key: K, aggregate: A | None) -> None:
        """Store ``aggregate`` packed (None or an empty one: remove ``key``)."""
        if aggregate is None or aggregate.is_empty():
            self._values.pop(key, None)
        else:
            self._values[key] = _ENCODER.encode(aggregate)

    def pop(self, key: K) -> A | None:
        """Remove ``key``; its aggregate, or None if there was none."""
        value = self._values.pop(key, None)
        return None if value is None else self._decoded(value)

    def discard(self, key: K) -> bool:
        """Remove ``key`` without decoding it; whether it was there."""
        return self._values.pop(key, None) is not None

    def pack(self) -> None:
        """Pack every opened aggregate (dropping the empty ones)."""
        values = self._values
        for key in self._opened:
            value = values.get(key)
            if value is None or isinstance(value, bytes):
                continue  # removed, or re-stored packed, since it was opened
            if value.is_empty():
                del values[key]
            else:
                values[key] = _ENCODER.encode(value)
        self._opened.clear()

    def clear(self) -> None:
        self._values.clear()
        self._opened.clear()


__all__ = ["PackedAggregates"]
