"""`watch.metrics_port`: a real `triage watch` serves Prometheus metrics that match what it did, and
asking for metrics without prometheus-client installed is a configuration error.

Only the daemon's test is an integration test (it needs Dovecot); the configuration's run in the
fast tier, so the mark is the test's own rather than the module's."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cli import run_triage
from tests.support.configs import write_config
from tests.support.dovecot import DovecotServer
from tests.support.run_server import FakeRunServer
from tests.support.store_view import final_count
from tests.support.watchd import WatchProcess, wait_until
from triage.adaptive_limit import INITIAL
from triage.config import Settings, WatchSettings, load_settings
from triage.errors import ConfigError
from triage.watch import Daemon

WATCH_FAST = {"idle_renew_s": 5, "heartbeat_s": 0.2, "retry_backoff_cap_s": 1, "reconnect_backoff_cap_s": 1}
MAX_CONCURRENCY = 32  # tests.support.configs.write_config's
INBOX = (("account", f"{DovecotServer.username}@127.0.0.1"), ("mailbox", "INBOX"))

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _plain(count: int) -> list[bytes]:
    return [
        f"From: user{n}@example.com\r\nTo: team@example.com\r\nSubject: Request {n}\r\n"
        f"Message-ID: <metrics-{n}@example.test>\r\nDate: Mon, 02 Nov 2026 10:00:00 +0000\r\n\r\n"
        f"Please look at item {n}.\r\n".encode()
        for n in range(count)
    ]


def _scrape(port: int) -> Samples:
    """Every sample served, by name and labels (sorted)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).raise_for_status().text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _named(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (found, labels), value in samples.items() if found == name}


def _caught_up(samples: Samples, count: int) -> bool:
    """The counter moves as each decision is recorded, the watermark once its whole batch is."""
    decided = sum(_named(samples, "triage_decisions_total").values())
    return decided == count and _named(samples, "triage_mailbox_watermark_lag") == {INBOX: 0}


def _reconnected(samples: Samples) -> bool:
    reconnects = _named(samples, "triage_mailbox_reconnects_total")
    return reconnects == {INBOX: 1} and _named(samples, "triage_mailbox_connected") == {INBOX: 1}


@pytest.mark.integration
def test_metrics_count_decisions_and_runs_and_show_connections_and_leases(
    tmp_path: Path, dovecot: DovecotServer
) -> None:
    count = 5
    db = tmp_path / "triage.db"
    with FakeRunServer() as server:
        write_config(tmp_path, dovecot, server.url, watch={**WATCH_FAST, "metrics_port": 0}, timeout_s=3)
        with WatchProcess(tmp_path) as daemon:
            daemon.wait_for_log("/metrics")
            found = re.search(r"metrics at http://127\.0\.0\.1:(\d+)/metrics", daemon.log)
            assert found is not None, daemon.log
            port = int(found.group(1))
            daemon.wait_idle(db)
            dovecot.append(_plain(count))
            wait_until(lambda: final_count(db) == count, 60, "the new mail decided")
            wait_until(lambda: _caught_up(_scrape(port), count), 30, "the metrics to catch up")
            samples = _scrape(port)
            assert _named(samples, "triage_decisions_total") == {
                (("decision", "new-task"), ("status", "ok")): count
            }
            assert _named(samples, "triage_run_latency_seconds_count") == {(): count}
            assert samples[("triage_run_latency_seconds_bucket", (("le", "+Inf"),))] == count
            assert _named(samples, "triage_runs_in_flight") == {(): 0}
            # Slow start: one place more per run that succeeded, up to the ceiling.
            assert _named(samples, "triage_run_concurrency_limit") == {
                (): min(INITIAL + count, MAX_CONCURRENCY)
            }
            assert _named(samples, "triage_mailbox_connected") == {INBOX: 1}
            assert _named(samples, "triage_mailbox_backlog") == {INBOX: 0}
            assert _named(samples, "triage_mailbox_reconnects_total") == {INBOX: 0}
            assert _named(samples, "triage_leases_held") == {(): 1}

            # Another daemon (of another mailbox) asking for the same port: one line, a config error.
            taken = run_triage(
                "watch",
                "--mailbox",
                "Spare",
                cwd=tmp_path,
                env={"TRIAGE_WATCH__METRICS_PORT": str(port)},
                timeout=60,
            )
            lines = taken.stderr.strip().splitlines()
            assert taken.returncode == 2 and len(lines) == 1, taken.stderr
            assert lines[0].startswith(f"triage: error: cannot serve metrics on 127.0.0.1:{port} "), lines

            for pid in dovecot.session_pids():
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda: _reconnected(_scrape(port)), 30, "a reconnect counted")
            assert daemon.stop() == 0
    assert server.runs == count


def test_metrics_are_off_by_default_on_loopback_when_on_and_a_bad_port_is_refused(
    tmp_path: Path, clean_triage_env: Path
) -> None:
    assert WatchSettings().metrics_port is None
    assert WatchSettings().metrics_host == "127.0.0.1"
    config = tmp_path / "triage.toml"
    config.write_text("[watch]\nmetrics_port = 70000\n")
    with pytest.raises(ConfigError, match=r"watch\.metrics_port") as refused:
        load_settings(config)
    assert refused.value.exit_code == 2


def test_metrics_without_prometheus_client_are_a_config_error(
    monkeypatch: pytest.MonkeyPatch, clean_triage_env: Path
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    assert Daemon(Settings(), []).metrics is None  # no metrics asked for: the library is not needed
    with pytest.raises(ConfigError, match=r"pip install 'triage\[metrics\]'") as refused:
        Daemon(Settings(watch=WatchSettings(metrics_port=9464)), [])
    assert refused.value.exit_code == 2
