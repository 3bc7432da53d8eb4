"""Prometheus metrics of one service: requests, latency, index sizes, queue length.

Each app gets its own registry (tests build many apps in one process). Index
sizes and queue lengths are read at scrape time, so they are never stale and
cost nothing between scrapes. Labels are route templates, bank names and
signal names: never ids, hashes or anything personal.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from api.service import Service
from matcher.review import stats as review_stats

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# From the first sighting of an ad to each step after it: minutes to a week.
RESPONSE_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 3 * 3600.0, 6 * 3600.0, 12 * 3600.0, 86400.0,
                    2 * 86400.0, 7 * 86400.0)


class _StateCollector(Collector):
    """Index sizes and review-queue lengths, computed when scraped."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Any]:
        sizes = GaugeMetricFamily("reunite_index_vectors", "Vectors in each loaded index",
                                  labels=["bank", "signal"])
        for bank in self.svc.store.catalog.banks():
            for name in self.svc.store.index_signals(bank):
                sizes.add_metric([bank.name, name], len(self.svc.store.indexes.get(bank.id, name)))
        yield sizes
        queue = GaugeMetricFamily("reunite_review_candidates", "Stored candidates per review state",
                                  labels=["state"])
        for state, n in self.svc.review.counts().items():
            queue.add_metric([state], n)
        yield queue
        yield from self._alerts()

    def _alerts(self) -> Iterator[Any]:
        """Response times of confirmed matches (read from the catalog: restarts lose none); failing alerts."""
        timings = review_stats.alert_timings(self.svc.store.catalog)
        histogram = HistogramMetricFamily(
            "reunite_alert_response_seconds",
            "Seconds from an ad's first sighting to each step of its confirmed match",
            labels=["stage", "bank"])
        by_bank: dict[str, list[review_stats.AlertTiming]] = {}
        for t in timings:
            by_bank.setdefault(t.bank, []).append(t)
        for bank, group in sorted(by_bank.items()):
            for stage in review_stats.STAGES:
                values = [v for t in group if (v := t.seconds[stage]) is not None]
                buckets = [(str(edge), float(sum(1 for v in values if v <= edge)))
                           for edge in RESPONSE_BUCKETS]
                buckets.append(("+Inf", float(len(values))))
                histogram.add_metric([stage, bank], buckets, sum_value=float(sum(values)))
        yield histogram
        failing = GaugeMetricFamily("reunite_alerts_failing",
                                    "Alerts not delivered: receiver failing, or no owner or subscriber")
        failing.add_metric([], self.svc.alerts.failing_count())
        yield failing


class Metrics:
    """The registry and the instruments the middleware updates."""

    def __init__(self, svc: Service) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("reunite_http_requests", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("reunite_http_request_seconds", "HTTP request latency",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_StateCollector(svc))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
