"""Prometheus metrics of `triage watch` (watch.metrics_port), on a registry of the daemon's own.

Only what happens once and is gone is counted as it happens: each recorded decision and the
latency of its run (the store holds every process's decisions, so it cannot tell this daemon's).
Everything else is read when Prometheus scrapes, from what the daemon keeps anyway: each
watcher's status (what its heartbeats write), the run client's adaptive limit, and the mailboxes'
watermarks and leases in the store. Between scrapes the metrics cost the daemon nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy.exc import SQLAlchemyError

from triage.errors import ConfigError
from triage.store import leases, mailboxes
from triage.store.decisions import Outcome, Store

log = logging.getLogger("triage.watch")

# Seconds: a rule or a cached model answers in under one, a busy model takes minutes.
_LATENCY_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
_MAILBOX = ("account", "mailbox")


class Watched(Protocol):
    """What the metrics read of one mailbox's watcher (triage.mailbox_watcher.MailboxWatcher)."""

    account: str
    mailbox: str
    status: dict[str, Any]
    reconnects: int


class Limited(Protocol):
    """What the metrics read of the run client (triage.runs.RunsClient)."""

    @property
    def in_flight(self) -> int: ...

    @property
    def concurrency(self) -> int: ...


class Metrics:
    """The daemon's metrics: counted as decisions are recorded, the rest read at scrape time."""

    def __init__(self) -> None:
        # Not prometheus_client's global registry: only what this daemon knows is served.
        self.registry = CollectorRegistry()
        self._decisions = Counter(
            "triage_decisions",
            "Decisions this daemon recorded, by status and decision (empty where there is none).",
            ("status", "decision"),
            registry=self.registry,
        )
        self._latency = Histogram(
            "triage_run_latency_seconds",
            "From sending a run to its final answer, retries included, of runs that answered.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def decided(self, outcome: Outcome) -> None:
        self._decisions.labels(outcome.status, outcome.decision or "").inc()
        if outcome.decided_by == "run" and outcome.latency_ms is not None:  # not a carried-over run's
            self._latency.observe(outcome.latency_ms / 1000)

    @contextlib.contextmanager
    def served(self, host: str, port: int, daemon: DaemonCollector) -> Iterator[None]:
        """Serve /metrics on host:port (0: any free port, logged) until the block ends."""
        try:
            server, thread = start_http_server(port, host, self.registry)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port} (watch.metrics_host, watch.metrics_port): "
                f"{exc.strerror or exc}"
            ) from None
        self.registry.register(daemon)
        log.info("metrics at http://%s:%d/metrics", f"[{host}]" if ":" in host else host, server.server_port)
        try:
            yield
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
            self.registry.unregister(daemon)


class DaemonCollector:
    """The daemon's state, read when Prometheus scrapes (on the metrics server's thread).

    `runs` and `watchers` are callables: the daemon makes its run client and watchers after the
    metrics are served, and a scrape before then finds none.
    """

    def __init__(
        self,
        store: Store,
        owner: str,
        runs: Callable[[], Limited | None],
        watchers: Callable[[], Sequence[Watched]],
    ) -> None:
        self.store = store
        self.owner = owner
        self.runs = runs
        self.watchers = watchers

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        runs = self.runs()
        if runs is not None:
            yield _gauge("triage_runs_in_flight", "Runs holding a place under the limit now.", runs.in_flight)
            yield _gauge(
                "triage_run_concurrency_limit",
                "How many runs may be in flight now (the adaptive limit, up to langgraph.max_concurrency).",
                runs.concurrency,
            )
        watchers = list(self.watchers())
        connected = GaugeMetricFamily(
            "triage_mailbox_connected",
            "1 while the mailbox's IMAP connection is up, else 0.",
            labels=_MAILBOX,
        )
        backlog = GaugeMetricFamily(
            "triage_mailbox_backlog", "Messages of the mailbox waiting for a decision.", labels=_MAILBOX
        )
        reconnects = CounterMetricFamily(
            "triage_mailbox_reconnects",
            "Times the mailbox's IMAP connection was made again after it was lost.",
            labels=_MAILBOX,
        )
        for watcher in watchers:
            where = [watcher.account, watcher.mailbox]
            connected.add_metric(where, 1 if watcher.status.get("connected") else 0)
            backlog.add_metric(where, watcher.status.get("backlog", 0))
            reconnects.add_metric(where, watcher.reconnects)
        yield from (connected, backlog, reconnects)
        try:
            yield from self._from_store(watchers)
        except SQLAlchemyError as exc:  # the daemon stops on its own; a scrape says what it can
            log.debug("metrics: the store could not be read: %s", exc)

    def _from_store(self, watchers: list[Watched]) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "triage_mailbox_watermark_lag",
            "UIDs by which the highest UID seen in the mailbox is above its watermark (the UID below"
            " which every message is recorded).",
            labels=_MAILBOX,
        )
        for watcher in watchers:
            seen = watcher.status.get("last_seen_uid") or 0
            below = mailboxes.watermark(self.store, watcher.account, watcher.mailbox)
            lag.add_metric([watcher.account, watcher.mailbox], max(seen - below, 0))
        held = sum(1 for s in leases.statuses(self.store) if s.owner == self.owner and s.state != "stopped")
        yield lag
        yield _gauge("triage_leases_held", "Mailboxes whose lease this daemon holds.", held)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
