"""Prometheus metrics of one process (``prometheus_client``), and what is read at scrape time.

Counters and histograms count what this process did (accepts, outcomes, runs, HTTP requests);
Prometheus sums them over the nodes of a cluster. Gauges of the queue (waiting records, the
oldest one's age) come from the store at scrape time, so every node reports the cluster's
queue; they are read at most once a second (:class:`StoreGauges`). docs/observability.md lists
every series, its labels and their cardinality.

The accept path pays one dictionary lookup of a cached child and its increment
(:meth:`Metrics.accepted`): the label values are formatted once per function row.

``serve --processes N`` shares counters and histograms between its processes with
prometheus_client's multiprocess mode (:func:`share_between_processes`): each process writes
its values to a file of its own in a private directory, and whichever process answers
``GET /metrics`` sums them all.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from openfgs.models import Function, Status

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: from a few milliseconds (a warm worker) to the max event age (an hour).
DISPATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                    30, 60, 300, 900, 3600)  # fmt: skip
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                    30, 60, 300, 900)  # fmt: skip
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
MAX_FUNCTION_CHILDREN = 100_000  # cached label children; past it the caches start over
STORE_GAUGE_SECONDS = 1.0
_shared_dir: Path | None = None


def share_between_processes(directory: Path) -> None:
    """From now on, count into files under ``directory`` that every process of the service
    writes (one file per process and kind) and any of them sums for ``GET /metrics``.

    Call it before any :class:`Metrics` is made. prometheus_client reads the directory from
    ``PROMETHEUS_MULTIPROC_DIR``; it is set here, for this process and the ones it starts.
    """
    global _shared_dir
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    _shared_dir = directory


def function_label(package: str, name: str, qualifier: str) -> str:
    """A function row as one label value: ``name:qualifier`` (``package/`` before it unless
    the package is ``default``), the tail of its URN."""
    prefix = "" if package == "default" else f"{package}/"
    return f"{prefix}{name}:{qualifier}"


class Metrics:
    """The metrics of one process, in a registry of their own (one per set of services)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        labels = ["project", "function"]
        self._accepted = Counter(
            "openfgs_async_accepted",
            "Async invocations accepted (202) by this node",
            labels,
            registry=self.registry,
        )
        self._finished = Counter(
            "openfgs_async_finished",
            "Async invocations that reached a terminal status on this node",
            [*labels, "status"],
            registry=self.registry,
        )
        self._dispatch = Histogram(
            "openfgs_dispatch_seconds",
            "From accept to the handler's start, first attempts",
            buckets=DISPATCH_BUCKETS,
            registry=self.registry,
        )
        self._duration = Histogram(
            "openfgs_invocation_duration_seconds",
            "Run time of async attempts on this node",
            labels,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.http_requests = Counter(
            "openfgs_http_requests",
            "HTTP requests answered, by route template",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "openfgs_http_request_duration_seconds",
            "HTTP request duration, by route template",
            ["route"],
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        self._accepted_children: dict[tuple[int, str], Any] = {}
        self._duration_children: dict[tuple[int, str], Any] = {}
        self._gauges: StoreGauges | None = None
        self._read_now: list[Collector] = []  # what a shared exposition adds to the files
        self._shared = _shared_dir

    def accepted(self, function: Function) -> None:
        """One accept of ``function``: the hot path, a cached child's increment."""
        key = (function.id, function.func_id)
        child = self._accepted_children.get(key)
        if child is None:
            child = self._child(self._accepted_children, self._accepted, key, function)
        child.inc()

    def finished(self, function: Function, status: Status) -> None:
        self._finished.labels(*self._labels(function), status.value).inc()

    def ran(self, function: Function, seconds: float) -> None:
        key = (function.id, function.func_id)
        child = self._duration_children.get(key)
        if child is None:
            child = self._child(self._duration_children, self._duration, key, function)
        child.observe(seconds)

    def dispatched(self, seconds: float) -> None:
        self._dispatch.observe(max(seconds, 0.0))

    def watch(
        self,
        read_waiting: Callable[[], Awaitable[list[WaitingRow]]],
        instance_states: Callable[[], dict[str, int]],
    ) -> StoreGauges:
        """The gauges read at scrape time (the store's queue, this node's instances),
        registered on the first call; later calls get the same."""
        if self._gauges is None:
            self._gauges = StoreGauges(read_waiting)
            self._read_now = [self._gauges, InstanceGauge(instance_states)]
            for collector in self._read_now:
                self.registry.register(collector)
        return self._gauges

    def exposition(self) -> bytes:
        if self._shared is None:
            return generate_latest(self.registry)
        # Every process's counters and histograms, summed from their files, and this
        # process's reading of the gauges.
        registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(registry, str(self._shared))  # type: ignore[no-untyped-call]
        for collector in self._read_now:
            registry.register(collector)
        return generate_latest(registry)

    @staticmethod
    def _labels(function: Function) -> tuple[str, str]:
        return function.project_id, function_label(
            function.package, function.name, function.qualifier
        )

    def _child(
        self, cache: dict[tuple[int, str], Any], metric: Any, key: tuple[int, str], fn: Function
    ) -> Any:
        if len(cache) >= MAX_FUNCTION_CHILDREN:
            cache.clear()
        child = cache[key] = metric.labels(*self._labels(fn))
        return child


WaitingRow = tuple[str, str, str, str, int, int]


class StoreGauges(Collector):
    """``openfgs_async_waiting`` and ``openfgs_async_oldest_waiting_seconds`` from the store.

    ``collect`` runs inside ``generate_latest`` and cannot wait for the store: the scrape
    handler calls :meth:`refresh` first, which reads the store at most once a second."""

    def __init__(self, read: Callable[[], Awaitable[list[WaitingRow]]]) -> None:
        self._read = read
        self._rows: list[WaitingRow] = []
        self._read_at = -STORE_GAUGE_SECONDS
        self._now_ms = 0

    async def refresh(self) -> None:
        if time.monotonic() - self._read_at < STORE_GAUGE_SECONDS:
            return
        self._rows = await self._read()
        self._read_at = time.monotonic()
        self._now_ms = time.time_ns() // 1_000_000

    def collect(self) -> Iterable[GaugeMetricFamily]:
        labels = ["project", "function"]
        waiting = GaugeMetricFamily(
            "openfgs_async_waiting", "Async invocations waiting (cluster-wide)", labels=labels
        )
        oldest = GaugeMetricFamily(
            "openfgs_async_oldest_waiting_seconds",
            "Age of the oldest waiting async invocation (cluster-wide)",
            labels=labels,
        )
        for project, package, name, qualifier, count, oldest_ms in self._rows:
            values = [project, function_label(package, name, qualifier)]
            waiting.add_metric(values, count)
            oldest.add_metric(values, max(self._now_ms - oldest_ms, 0) / 1000)
        yield waiting
        yield oldest


class InstanceGauge(Collector):
    """``openfgs_instances{state}``: this node's function instances, read at scrape time."""

    def __init__(self, states: Callable[[], dict[str, int]]) -> None:
        self._states = states

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "openfgs_instances", "Function instances of this node", labels=["state"]
        )
        for state, count in sorted(self._states().items()):
            gauge.add_metric([state], count)
        yield gauge
