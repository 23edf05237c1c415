"""The bounded TTL cache: entries expire, the least recently used go first, misses are kept."""

from __future__ import annotations

import pytest

from openfgs.cache import Entry, TtlCache


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_value_lives_for_its_ttl() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(10, clock=clock)
    cache.put("a", 1, ttl=5)

    clock.now += 4.9
    assert cache.get("a") == 1
    clock.now += 0.1
    assert cache.get("a") is None
    assert len(cache) == 0  # dropped when met


def test_time_may_be_given_instead_of_read() -> None:
    cache: TtlCache[str, int] = TtlCache(10, clock=lambda: pytest.fail("clock read"))
    cache.put("a", 1, ttl=5, now=0.0)

    assert cache.lookup("a", now=4.0) == Entry(1, 5.0)
    assert cache.get("a", now=5.0) is None


def test_a_remembered_miss_is_told_apart_from_no_entry() -> None:
    cache: TtlCache[str, int | None] = TtlCache(10)
    cache.put("missing", None, ttl=60)

    hit = cache.lookup("missing")
    assert hit is not None and hit.value is None
    assert cache.lookup("never-put") is None


def test_it_never_holds_more_than_max_entries() -> None:
    cache: TtlCache[int, int] = TtlCache(100)
    for key in range(10_000):
        cache.put(key, key, ttl=60)
        assert len(cache) <= 100

    assert len(cache) == 100
    assert [cache.get(key) for key in (9_899, 9_900, 9_999)] == [None, 9_900, 9_999]


def test_the_least_recently_used_entry_is_evicted_first() -> None:
    cache: TtlCache[str, int] = TtlCache(3)
    for key in "abc":
        cache.put(key, ord(key), ttl=60)

    assert cache.get("a") is not None  # "b" is now the least recently used
    cache.put("d", 4, ttl=60)

    assert cache.get("b") is None
    assert {key for key in "acd" if cache.get(key) is not None} == {"a", "c", "d"}


def test_putting_an_existing_key_replaces_it_without_evicting() -> None:
    cache: TtlCache[str, int] = TtlCache(2)
    cache.put("a", 1, ttl=60)
    cache.put("b", 2, ttl=60)
    cache.put("a", 3, ttl=60)

    assert (cache.get("a"), cache.get("b"), len(cache)) == (3, 2, 2)


def test_expired_entries_are_swept_as_new_ones_come() -> None:
    clock = Clock()
    cache: TtlCache[int, int] = TtlCache(1000, clock=clock)
    for key in range(500):
        cache.put(key, key, ttl=1)
    clock.now += 2
    for key in range(500, 750):
        cache.put(key, key, ttl=1)

    assert len(cache) == 250


def test_pop_forgets_a_key() -> None:
    cache: TtlCache[str, int] = TtlCache(2)
    cache.put("a", 1, ttl=60)

    assert cache.pop("a") == 1
    assert cache.pop("a") is None
    assert len(cache) == 0


def test_a_cache_must_hold_something() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        TtlCache(0)
