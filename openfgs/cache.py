"""A bounded in-memory cache: entries expire after their TTL and the least recently used go first.

Every table the service keeps per key a client chooses (access keys, tokens, client addresses)
must be bounded, or a client sending many distinct keys grows the process without limit. This
is the one type for them. Operations are O(1); expired entries are dropped when met, so no
background task is needed. Time comes from an injectable clock, or from the caller (``now``),
which lets tests move time without sleeping. Not thread-safe: use it from one event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Expired entries dropped from the old end of the order on each put, so a cache whose
# entries expire shrinks back without waiting to be full.
_SWEEP_PER_PUT = 2


@dataclass(frozen=True, slots=True)
class Entry(Generic[V]):
    """A cached value and the clock reading at which it expires."""

    value: V
    expires_at: float


class TtlCache(Generic[K, V]):
    """At most ``max_entries`` entries, each living ``ttl`` seconds from its ``put``.

    When full, a ``put`` of a new key evicts the least recently used entry (a hit by
    :meth:`lookup` or :meth:`get` counts as a use). A value may be ``None`` — a remembered
    miss — which :meth:`lookup` tells apart from an absent entry.
    """

    def __init__(self, max_entries: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[K, Entry[V]] = OrderedDict()

    def __len__(self) -> int:
        """Entries held, expired ones not yet dropped included."""
        return len(self._entries)

    def lookup(self, key: K, now: float | None = None) -> Entry[V] | None:
        """The live entry of ``key`` (marked as used), or None when absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= (self.clock() if now is None else now):
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def get(self, key: K, now: float | None = None) -> V | None:
        """The live value of ``key``, or None when absent or expired."""
        entry = self.lookup(key, now)
        return None if entry is None else entry.value

    def put(self, key: K, value: V, ttl: float, now: float | None = None) -> Entry[V]:
        """Remember ``value`` for ``ttl`` seconds, evicting the least recently used if full."""
        now = self.clock() if now is None else now
        entries = self._entries
        for _ in range(_SWEEP_PER_PUT):
            oldest = next(iter(entries.values()), None)
            if oldest is None or oldest.expires_at > now:
                break
            entries.popitem(last=False)
        if key in entries:
            entries.move_to_end(key)
        elif len(entries) >= self.max_entries:
            entries.popitem(last=False)
        entry = Entry(value, now + ttl)
        entries[key] = entry
        return entry

    def pop(self, key: K) -> V | None:
        """Forget ``key``; its value if it was held (expired or not), else None."""
        entry = self._entries.pop(key, None)
        return None if entry is None else entry.value

    def clear(self) -> None:
        self._entries.clear()
