"""Decisions that learn, in this process: labels become examples in the prompt, the reference rules
follow them, confirmations count, `rules suggest` reads them and `replay --corrected` shows the lift.

The run server is the stub, answering each prompt with the reference assistant's own offline rules
(triage.assistant.rules), so what a test sees decided is what `langgraph dev` would decide.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.support.configs import write_file_config
from tests.support.inprocess import FAST_RUNS, triage, write_mbox
from tests.support.run_server import FakeRunServer
from tests.support.store_view import rows
from triage.assistant.rules import decide
from triage.config import RoutingSettings
from triage.rules import first_match

pytestmark = pytest.mark.usefixtures("clean_triage_env")

Capsys = pytest.CaptureFixture[str]


def mail(n: int, sender: str, subject: str, *, list_id: str | None = None, body: str = "") -> bytes:
    headers = [
        f"From: {sender}",
        "To: support@example.com",
        f"Subject: {subject}",
        f"Message-ID: <learn-{n}@example.test>",
        f"Date: Tue, 03 Nov 2026 09:{n % 60:02d}:00 +0000",
    ]
    if list_id:
        headers.append(f"List-Id: {list_id}")
    text = body or f"Hello, could you have a look at {subject.lower()}? Message {n}."
    return ("\r\n".join(headers) + f"\r\n\r\n{text}\r\n").encode()


def by_rules(_index: int, body: dict[str, Any]) -> str:
    """The stub's answer: the reference assistant's offline rules over the prompt it was sent."""
    prompt = body["input"]["messages"][-1]["content"]
    return "ok-json:" + json.dumps(decide(prompt))


def decisions(db: Path, mailbox: Path) -> dict[str, tuple[int, str, str | None]]:
    """Sender -> (decision id, decision, reason) of the messages of one mail file."""
    found = rows(
        db,
        "SELECT m.sender, d.id, d.decision, d.reason FROM decisions d "
        "JOIN messages m ON m.id = d.message_pk WHERE m.mailbox = ? ORDER BY d.id",
        str(mailbox),
    )
    return {str(sender): (int(pk), str(kind), reason) for sender, pk, kind, reason in found}  # type: ignore[call-overload]


def backfill(capsys: Capsys, config: Path, box: Path) -> None:
    done = triage(capsys, "--config", config, "backfill", "--source", box, "--quiet")
    assert done.status == 0, done.err


def test_new_mail_from_corrected_senders_follows_the_correction_and_show_prints_the_example(
    tmp_path: Path, capsys: Capsys
) -> None:
    senders = ["ana@one.example", "bo@two.example", "cy@three.example", "di@four.example"]
    first = write_mbox(tmp_path / "first.mbox", [mail(n, s, f"Invoice {n}") for n, s in enumerate(senders)])
    later = write_mbox(
        tmp_path / "later.mbox", [mail(10 + n, s, f"Quarterly report {n}") for n, s in enumerate(senders)]
    )
    db = tmp_path / "triage.db"
    with FakeRunServer(by_rules) as server:
        config = write_file_config(tmp_path, server.url, langgraph=FAST_RUNS)
        backfill(capsys, config, first)
        before = decisions(db, first)
        assert {kind for _, kind, _ in before.values()} == {"new-task"}
        for sender in senders[:2]:  # a person says: mail from these two needs no action
            pk = before[sender][0]
            done = triage(capsys, "correct", str(pk), "--decision", "ignore", "--note", "a vendor's robot")
            assert done.status == 0, done.err
        backfill(capsys, config, later)
    after = decisions(db, later)
    assert {s: kind for s, (_, kind, _) in after.items()} == {
        "ana@one.example": "ignore",
        "bo@two.example": "ignore",
        "cy@three.example": "new-task",
        "di@four.example": "new-task",
    }
    assert (
        after["ana@one.example"][2]
        == "follows a correction of earlier mail from the same sender ana@one.example"
    )
    # The example is stored with the decision, in the prompt as sent, and shown.
    ana_pk, ana_corrected = after["ana@one.example"][0], before["ana@one.example"][0]
    (stored,) = rows(db, "SELECT examples, prompt FROM decisions WHERE id = ?", ana_pk)
    examples = json.loads(str(stored[0]))
    assert [(x["decision_id"], x["decision"], x["was"], x["kind"]) for x in examples[:1]] == [
        (
            ana_corrected,
            "ignore",
            "new-task",
            "correction",
        )
    ]
    assert "\n- from: ana@one.example | list: - | decision: ignore | correction (was new-task) |" in str(
        stored[1]
    )
    shown = triage(capsys, "show", str(ana_pk))
    assert shown.status == 0, shown.err
    assert (
        f"example         ignore (decision {ana_corrected}, correction, was new-task) from ana@one.example"
        in (shown.out)
    )


def test_no_examples_with_max_examples_zero(tmp_path: Path, capsys: Capsys) -> None:
    first = write_mbox(tmp_path / "first.mbox", [mail(1, "ana@one.example", "Invoice")])
    later = write_mbox(tmp_path / "later.mbox", [mail(2, "ana@one.example", "Invoice again")])
    db = tmp_path / "triage.db"
    with FakeRunServer(by_rules) as server:
        config = write_file_config(tmp_path, server.url, langgraph=FAST_RUNS)
        config.write_text(config.read_text() + "\n[prompt]\nmax_examples = 0\n")
        backfill(capsys, config, first)
        assert triage(capsys, "correct", "1", "--decision", "ignore").status == 0
        backfill(capsys, config, later)
    assert decisions(db, later)["ana@one.example"][1] == "new-task"
    assert rows(db, "SELECT examples FROM decisions WHERE id = 2") == [("[]",)]
    assert "<examples>" not in str(rows(db, "SELECT prompt FROM decisions WHERE id = 2")[0][0])


def test_a_confirmation_is_a_label_from_scripts_and_from_review(tmp_path: Path, capsys: Capsys) -> None:
    box = write_mbox(tmp_path / "in.mbox", [mail(n, f"p{n}@x.example", f"Thing {n}") for n in (1, 2)])
    db = tmp_path / "triage.db"
    with FakeRunServer(by_rules) as server:
        config = write_file_config(tmp_path, server.url, langgraph=FAST_RUNS)
        backfill(capsys, config, box)
    confirmed = triage(capsys, "correct", "1", "--confirm", "--note", "right")
    assert confirmed.status == 0, confirmed.err
    assert confirmed.out.strip() == "decision 1 confirmed as new-task"
    with pytest.raises(SystemExit) as refused:
        triage(capsys, "correct", "1", "--confirm", "--decision", "ignore")
    assert refused.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert rows(db, "SELECT decision_pk, kind, decision, note FROM corrections") == [
        (1, "confirmation", "new-task", "right")
    ]


def test_review_accepting_records_a_confirmation(
    tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    box = write_mbox(tmp_path / "in.mbox", [mail(1, "p1@x.example", "Thing")])
    db = tmp_path / "triage.db"
    with FakeRunServer(by_rules) as server:
        config = write_file_config(tmp_path, server.url, langgraph=FAST_RUNS)
        backfill(capsys, config, box)
    monkeypatch.setattr("sys.stdin", io.StringIO("a\n"))
    done = triage(capsys, "review", "--all")
    assert done.status == 0, done.err
    assert "reviewed: 1 accepted, 0 corrected, 0 skipped" in done.out
    assert rows(db, "SELECT kind, decision FROM corrections") == [("confirmation", "new-task")]


def test_rules_suggest_prints_a_rule_for_agreeing_labels_only(tmp_path: Path, capsys: Capsys) -> None:
    robot = "Robot <robot@vendor.example>"
    messages = [mail(n, robot, f"Build {n} passed") for n in range(1, 5)]
    messages += [mail(n, "News <news@letters.example>", f"Issue {n}") for n in range(5, 8)]
    box = write_mbox(tmp_path / "in.mbox", messages)
    with FakeRunServer(by_rules) as server:
        config = write_file_config(tmp_path, server.url, langgraph=FAST_RUNS)
        backfill(capsys, config, box)
    for pk in (1, 2, 3, 5, 6, 7):
        assert triage(capsys, "correct", str(pk), "--decision", "ignore").status == 0
    assert triage(capsys, "correct", "5", "--decision", "new-task").status == 0  # news: one against
    assert triage(capsys, "correct", "4", "--confirm").status == 0  # a confirmation of new-task: against
    shown = triage(capsys, "rules", "suggest")
    assert shown.status == 0, shown.err
    assert "# no sender or list has 3 or more labels that all agree" in shown.out
    assert triage(capsys, "correct", "4", "--decision", "ignore").status == 0
    shown = triage(capsys, "rules", "suggest")
    assert shown.status == 0, shown.err
    assert "# mail from robot@vendor.example: 4 labels agree (4 corrections), none against" in shown.out
    suggested = tomllib.loads(shown.out)["routing"]["rules"]
    assert [(r["name"], r["decision"]) for r in suggested] == [("ignore-robot-vendor-example", "ignore")]
    rules = RoutingSettings(rules=suggested).rules
    from triage.message import parse_email

    robot_mail = parse_email(mail(9, robot, "Build 9 passed"), 4000)
    lookalike = parse_email(mail(10, "Robot <robot@vendor.example.org>", "Hi"), 4000)
    assert first_match(rules, robot_mail) is not None  # type: ignore[arg-type]
    assert first_match(rules, lookalike) is None  # type: ignore[arg-type]


def test_replay_of_corrected_decisions_shows_the_lift_of_examples(tmp_path: Path, capsys: Capsys) -> None:
    senders = ["ana@one.example", "bo@two.example", "cy@three.example"]
    first = write_mbox(tmp_path / "first.mbox", [mail(n, s, f"Alert {n}") for n, s in enumerate(senders)])
    later = write_mbox(
        tmp_path / "later.mbox", [mail(10 + n, s, f"Alert {10 + n}") for n, s in enumerate(senders[:2])]
    )
    db = tmp_path / "triage.db"
    with FakeRunServer(by_rules) as server:
        config = write_file_config(tmp_path, server.url, langgraph=FAST_RUNS)
        config.write_text(config.read_text() + "\n[prompt]\nmax_examples = 0\n")  # decided without learning
        backfill(capsys, config, first)
        backfill(capsys, config, later)
        labelled = [pk for (pk,) in rows(db, "SELECT id FROM decisions ORDER BY id")]  # type: ignore[misc]
        for pk in labelled:
            assert triage(capsys, "correct", str(pk), "--decision", "ignore").status == 0
        config.write_text(config.read_text().replace("max_examples = 0", "max_examples = 4"))
        with_examples = triage(capsys, "replay", "--corrected", "--json")
        without = triage(capsys, "replay", "--corrected", "--no-examples", "--json")
        printed = triage(capsys, "replay", "--corrected")
    assert with_examples.status == 0, with_examples.err
    assert without.status == 0, without.err
    # Independently: a corrected message can follow only a label of the same sender's mail decided
    # before it (its own is left out): the later mail of ana and bo, not the first of anyone.
    decided = rows(db, "SELECT d.id, m.sender FROM decisions d JOIN messages m ON m.id = d.message_pk")
    followable = sum(
        1
        for pk, sender in decided
        if any(other < pk and s == sender for other, s in decided)  # type: ignore[operator]
    )
    assert followable == 2
    lift = json.loads(with_examples.out)["lift"]
    baseline = json.loads(without.out)["lift"]
    ((template, row),) = lift.items()
    assert row == {"labelled": 5, "recorded_agree": 0, "replayed_agree": followable}
    assert baseline == {template: {"labelled": 5, "recorded_agree": 0, "replayed_agree": 0}}
    assert f"\n{template:<20}{5:>10}{'0/5 (0.0%)':>22}{'2/5 (40.0%)':>22}{'+40.0%':>10}\n" in printed.out
