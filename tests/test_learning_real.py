"""Decisions that learn, against a real Dovecot and the reference assistant on a real `langgraph dev`:
corrections followed by the next backfill, and the user's own filing read by the daemon as labels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cli import run_triage
from tests.support.configs import write_config
from tests.support.dovecot import DovecotServer
from tests.support.store_view import rows
from tests.support.watchd import WatchProcess, wait_until
from triage.devserver import DevServer

pytestmark = pytest.mark.integration

IGNORED = "Triage/Ignored"
WATCH_FAST = {"idle_renew_s": 5, "heartbeat_s": 0.2, "retry_backoff_cap_s": 1, "reconnect_backoff_cap_s": 1}


def mail(tag: str, sender: str, subject: str, *, listed: bool = False) -> bytes:
    headers = [
        f"From: {sender}",
        "To: support@example.com",
        f"Subject: {subject}",
        f"Message-ID: <{tag}@learning.test>",
        "Date: Tue, 03 Nov 2026 09:00:00 +0000",
    ]
    if listed:
        headers.append("List-Id: Weekly news <news.example.org>")
    return ("\r\n".join(headers) + f"\r\n\r\nAbout {subject.lower()}: could you have a look?\r\n").encode()


def by_subject(db: Path) -> dict[str, tuple[int, str, str, str | None]]:
    """Subject -> (decision id, mailbox, decision, decided_by) of the latest sighting of each mail."""
    found = rows(
        db,
        "SELECT m.subject, d.id, m.mailbox, d.decision, d.decided_by FROM decisions d "
        "JOIN messages m ON m.id = d.message_pk ORDER BY d.id",
    )
    return {str(s): (int(pk), str(box), str(kind), by) for s, pk, box, kind, by in found}  # type: ignore[call-overload]


def test_corrected_senders_are_ignored_by_the_next_backfill_and_show_prints_the_example(
    tmp_path: Path, dovecot: DovecotServer, langgraph_server: DevServer, stateless_runs: Callable[[], int]
) -> None:
    senders = [f"{name}@{name}.example" for name in ("ana", "bo", "cy", "di", "ed")]
    dovecot.append([mail(f"a-{n}", s, f"Invoice {n}") for n, s in enumerate(senders)])
    write_config(tmp_path, dovecot, langgraph_server.url)
    db = tmp_path / "triage.db"
    first = run_triage("backfill", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    decided = by_subject(db)
    assert {kind for _, _, kind, _ in decided.values()} == {"new-task"}
    for n in range(3):  # a person: ana, bo and cy send nothing to act on
        pk = decided[f"Invoice {n}"][0]
        done = run_triage("correct", str(pk), "--decision", "ignore", "--note", "automated", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    dovecot.append([mail(f"b-{n}", s, f"Report {n}") for n, s in enumerate(senders)])
    second = run_triage("backfill", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    after = by_subject(db)
    assert [after[f"Report {n}"][2] for n in range(5)] == [
        "ignore",
        "ignore",
        "ignore",
        "new-task",
        "new-task",
    ]
    assert stateless_runs() == 10  # one run each, no more
    shown = run_triage("show", str(after["Report 1"][0]), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    corrected = decided["Invoice 1"][0]
    assert (
        "reason          follows a correction of earlier mail from the same sender bo@bo.example"
        in shown.stdout
    )
    assert f"example         ignore (decision {corrected}, correction, was new-task) from bo@bo.example" in (
        shown.stdout
    )


def test_the_users_filing_is_a_label_and_sends_no_run(
    tmp_path: Path, dovecot: DovecotServer, langgraph_server: DevServer, stateless_runs: Callable[[], int]
) -> None:
    dovecot.create_mailbox(IGNORED)
    write_config(
        tmp_path,
        dovecot,
        langgraph_server.url,
        watch=WATCH_FAST,
        timeout_s=3,
        mailboxes=["INBOX", IGNORED],
        routing={"actions": {"ignore": {"move_to": IGNORED}}},
    )
    db = tmp_path / "triage.db"
    with WatchProcess(tmp_path) as daemon:
        daemon.wait_idle(db)
        daemon.wait_idle(db, IGNORED)
        dovecot.append(
            [
                mail("news-1", "news@example.org", "Weekly 1", listed=True),
                mail("p-1", "ana@a.example", "Help 1"),
            ]
        )
        # The newsletter is ignored and moved; its sighting in the watched folder is triage's own move.
        wait_until(
            lambda: len(by_subject(db)) == 2 and by_subject(db)["Weekly 1"][1] == IGNORED, 60, daemon.log
        )
        sightings = rows(
            db,
            "SELECT d.id, m.mailbox, d.decision, d.decided_by FROM decisions d "
            "JOIN messages m ON m.id = d.message_pk WHERE m.subject = 'Weekly 1' ORDER BY d.id",
        )
        (first, *_), (_, *moved) = sightings
        assert moved == [IGNORED, "ignore", f"moved:{first}"]
        assert stateless_runs() == 2
        # The user disagrees twice: the newsletter back to the inbox, ana's mail into the ignore folder.
        with dovecot.client() as client:
            client.select_folder(IGNORED)
            client.move(client.search("ALL"), "INBOX")
            client.select_folder("INBOX")
            client.move(client.search(["HEADER", "Message-ID", "<p-1@learning.test>"]), IGNORED)
        filed = "SELECT count(*) FROM decisions WHERE decided_by LIKE 'filing:%'"
        wait_until(lambda: rows(db, filed) == [(2,)], 60, f"two filings:\n{daemon.log}")
        assert stateless_runs() == 2  # recognised, not sent to the model again
        labels = rows(
            db,
            "SELECT m.subject, m.mailbox, c.kind, c.decision FROM corrections c "
            "JOIN decisions d ON d.id = c.decision_pk JOIN messages m ON m.id = d.message_pk ORDER BY c.id",
        )
        assert sorted(labels) == [  # type: ignore[type-var]
            ("Help 1", "INBOX", "filing", "ignore"),
            ("Weekly 1", "INBOX", "filing", "new-task"),
        ]
        # The next mail of that list and of that sender follows the user's filing.
        dovecot.append(
            [
                mail("news-2", "news@example.org", "Weekly 2", listed=True),
                mail("p-2", "ana@a.example", "Help 2"),
            ]
        )
        arrived = {"Weekly 2": "INBOX", "Help 2": IGNORED}  # ana's next mail ignored, so moved
        wait_until(lambda: {s: by_subject(db).get(s, (0, ""))[1] for s in arrived} == arrived, 60, daemon.log)
        assert daemon.stop() == 0
    after = by_subject(db)
    assert (after["Weekly 2"][2], after["Help 2"][2]) == ("new-task", "ignore")
    assert stateless_runs() == 4
    with dovecot.client() as client:
        client.select_folder(IGNORED, readonly=True)
        subjects = {
            data[b"ENVELOPE"].subject.decode()
            for data in client.fetch(client.search("ALL"), ["ENVELOPE"]).values()
        }
    assert subjects == {"Help 1", "Help 2"}  # ana's mail, and nothing moved twice
