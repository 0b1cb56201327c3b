"""How an account's mailboxes share its connection budget, which shared mailbox is looked at next,
and how daemons on one store divide the mailboxes."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest

from triage.config import ImapSettings, Settings
from triage.errors import MailboxUnavailable
from triage.mailbox_shares import Change, connections_each, rebalance
from triage.mailbox_watcher import MailboxWatcher, RetrySchedule
from triage.shared_mailboxes import SharedMailboxes
from triage.sources.imap import ImapSource
from triage.sources.imap_notify import mailboxes_named
from triage.watch_links import SharedLink
from triage.watch_plan import by_priority, needs_capabilities, plan_links

TWELVE = [*(f"Project{n}" for n in range(11)), "INBOX"]


def test_up_to_the_budget_every_mailbox_has_a_connection_of_its_own() -> None:
    plan = plan_links(["Later", "INBOX", "Work"], 3, "auto", notify_offered=True)
    assert (plan.own, plan.shared, plan.connections) == (["INBOX", "Later", "Work"], [], 3)
    assert not needs_capabilities(["Later", "INBOX", "Work"], 3, "auto")


def test_past_the_budget_notify_listens_on_one_connection_and_the_rest_fetch() -> None:
    plan = plan_links(TWELVE, 3, "auto", notify_offered=True)
    assert plan.own == [] and plan.notify and plan.fetchers == 2
    assert plan.shared[0] == "INBOX" and sorted(plan.shared) == sorted(TWELVE)
    assert plan.connections == 3
    assert needs_capabilities(TWELVE, 3, "auto")


@pytest.mark.parametrize("mode, notify", [("auto", False), ("idle", True), ("poll", True)])
def test_without_notify_the_first_mailboxes_keep_a_connection_and_one_checks_the_rest(
    mode: str, notify: bool
) -> None:
    plan = plan_links(TWELVE, 3, mode, notify_offered=notify)
    assert plan.own == ["INBOX", "Project0"] and not plan.notify and plan.fetchers == 1
    assert plan.shared == [f"Project{n}" for n in range(1, 11)]
    assert plan.connections == 3
    assert "one connection checking 10 more every 60 s" in plan.describe(60)


@pytest.mark.parametrize("budget", [1, 2, 5, 11, 12, 40])
@pytest.mark.parametrize("notify", [True, False])
def test_the_budget_is_never_exceeded_and_every_mailbox_is_served_once(budget: int, notify: bool) -> None:
    plan = plan_links(TWELVE, budget, "auto", notify_offered=notify)
    assert plan.connections <= budget
    assert sorted(plan.own + plan.shared) == sorted(TWELVE)
    assert plan.fetchers >= (1 if plan.shared else 0)


def test_a_budget_of_one_checks_every_mailbox_on_its_one_connection() -> None:
    plan = plan_links(TWELVE, 1, "auto", notify_offered=True)
    assert (plan.own, plan.fetchers, plan.notify, len(plan.shared)) == ([], 1, False, 12)
    assert not needs_capabilities(TWELVE, 1, "auto")


def test_inbox_comes_first_then_the_configs_order_without_repeats() -> None:
    assert by_priority(["B", "inbox", "A", "B"]) == ["inbox", "B", "A"]


def test_notify_news_names_the_mailboxes_that_changed() -> None:
    said = [
        (b"STATUS", b"Project3", (b"MESSAGES", 1, b"UIDNEXT", 2)),
        (b"STATUS", 2024, (b"MESSAGES", 1)),  # a numeric name, as imapclient parses it
        (b"STATUS", b"Caf&AOk-", (b"UIDNEXT", 9)),  # modified UTF-7
        (4, b"EXISTS"),
        (b"OK", b"Still here"),
    ]
    assert mailboxes_named(said) == {"Project3", "2024", "Café"}


def _watcher(name: str) -> MailboxWatcher:
    return cast(MailboxWatcher, SimpleNamespace(mailbox=name, retries=RetrySchedule(60.0), status={}))


def _shared(*names: str, sweep_s: float = 3600) -> tuple[SharedMailboxes, dict[str, Any]]:
    watchers = {name: _watcher(name) for name in names}
    return SharedMailboxes(list(watchers.values()), sweep_s), watchers


def test_every_shared_mailbox_is_looked_at_first_in_order_then_only_on_news() -> None:
    shared, _ = _shared("INBOX", "A", "B")
    stop = threading.Event()
    taken = [shared.take(stop) for _ in range(3)]
    assert [w.mailbox for w in taken if w is not None] == ["INBOX", "A", "B"]
    for watcher in taken:
        assert watcher is not None
        shared.done(watcher)
    shared.mark(["B", "Elsewhere"])
    again = shared.take(stop)
    assert again is not None and again.mailbox == "B"
    threading.Timer(0.2, stop.set).start()
    assert shared.take(stop) is None  # nothing else had news: it waits, until the stop


def test_a_mailbox_is_looked_at_by_one_connection_at_a_time_and_again_if_cut_short() -> None:
    shared, _ = _shared("A")
    stop = threading.Event()
    first = shared.take(stop)
    assert first is not None
    shared.mark(["A"])  # news while a connection is looking
    waiting: list[MailboxWatcher | None] = []
    other = threading.Thread(target=lambda: waiting.append(shared.take(stop)))
    other.start()
    time.sleep(0.1)
    assert not waiting  # the other connection waits for the look to end
    shared.done(first)
    other.join(5)
    assert waiting and waiting[0] is first


def test_the_sweep_and_a_due_retry_bring_a_mailbox_back() -> None:
    shared, watchers = _shared("A", "B", sweep_s=0.2)
    stop = threading.Event()
    for _ in range(2):
        taken = shared.take(stop)
        assert taken is not None
        shared.done(taken)
    started = time.monotonic()
    swept = shared.take(stop)
    assert swept is not None and swept.mailbox == "A" and time.monotonic() - started >= 0.1
    shared.done(swept)
    again = shared.take(stop)
    assert again is not None
    shared.done(again)
    watchers["B"].retries.due[7] = time.monotonic()  # a failed message of B falls due
    retried = shared.take(stop)
    assert retried is not None and retried.mailbox == "B"


EIGHT = [("me@host", name) for name in ["INBOX", *(f"Team{n}" for n in range(7))]]


def test_a_lone_daemon_takes_every_mailbox() -> None:
    assert rebalance(EIGHT, set(), set(), 1) == Change(take=EIGHT, drop=[])


def test_a_daemon_over_its_share_releases_the_configs_last_mailboxes() -> None:
    change = rebalance(EIGHT, set(EIGHT), set(), 3)  # a second and a third daemon started
    assert change == Change(take=[], drop=EIGHT[3:])


def test_a_daemon_under_its_share_takes_only_free_mailboxes() -> None:
    mine, others = set(EIGHT[:2]), set(EIGHT[2:5])
    assert rebalance(EIGHT, mine, others, 3) == Change(take=[EIGHT[5]], drop=[])
    assert rebalance(EIGHT, mine, set(EIGHT[2:]), 3) == Change(take=[], drop=[])  # none free: it waits


def test_shares_add_up_so_every_mailbox_finds_a_daemon() -> None:
    """Daemons taking turns, each seeing what the others hold, end with all eight held once."""
    held: list[set[tuple[str, str]]] = [set(), set(), set()]
    for _ in range(4):
        for n, mine in enumerate(held):
            others = set().union(*(h for m, h in enumerate(held) if m != n))
            change = rebalance(EIGHT, mine, others, 3)
            mine -= set(change.drop)
            mine |= set(change.take)
    assert sorted(len(h) for h in held) == [2, 3, 3]
    assert set().union(*held) == set(EIGHT) and sum(len(h) for h in held) == 8


@pytest.mark.parametrize("budget, daemons, each", [(3, 1, 3), (3, 2, 1), (6, 3, 2), (3, 5, 1)])
def test_each_daemon_gets_its_part_of_the_connection_budget(budget: int, daemons: int, each: int) -> None:
    assert connections_each(budget, daemons) == each


class _Statuses:
    """A source as a shared connection uses it: STATUS per mailbox; `missing` ones cannot be opened."""

    def __init__(self, missing: tuple[str, ...] = ()) -> None:
        self.missing = missing

    def status(self, mailbox: str) -> tuple[int, int]:
        if mailbox in self.missing:
            raise MailboxUnavailable(f"cannot open mailbox {mailbox!r}: NONEXISTENT")
        return (1, 5)

    def select(self, mailbox: str) -> int:
        return 1


def _looked_at(name: str, catch_up: Any) -> Any:
    watcher = SimpleNamespace(
        mailbox=name, label=name, retries=RetrySchedule(60.0), status={"state": "idle"}, seen=None
    )
    watcher.set = watcher.status.update
    watcher.open = lambda source: source.select(name)
    watcher.catch_up = catch_up
    return watcher


def _shared_link(shared: SharedMailboxes, stop: threading.Event) -> SharedLink:
    settings = cast(Settings, SimpleNamespace(watch=SimpleNamespace(poll_interval_s=60.0)))
    return SharedLink("shared", shared, settings, cast(ImapSettings, None), stop, threading.Event())


def test_a_catch_up_cut_short_leaves_the_mailbox_to_be_looked_at_again() -> None:
    stop = threading.Event()
    cut_short = _looked_at("A", lambda source, uidvalidity, stop_: stop.set())
    link = _shared_link(SharedMailboxes([cut_short], 3600), stop)
    assert link._look(cast(ImapSource, _Statuses()), cut_short) is False
    assert cut_short.seen is None  # so the next look catches up, though STATUS has not changed
    stop.clear()
    whole = _looked_at("A", lambda source, uidvalidity, stop_: None)
    assert link._look(cast(ImapSource, _Statuses()), whole) is True and whole.seen == (1, 5)


def test_a_mailbox_that_cannot_be_opened_does_not_keep_the_others_waiting() -> None:
    stop = threading.Event()
    looked: list[str] = []

    def catch_up(source: object, uidvalidity: int, stop_: threading.Event) -> None:
        looked.append("Good")
        stop.set()

    broken, good = _looked_at("Broken", None), _looked_at("Good", catch_up)
    link = _shared_link(SharedMailboxes([broken, good], 3600), stop)
    link.serve(cast(ImapSource, _Statuses(missing=("Broken",))))
    assert looked == ["Good"]
    assert broken.status["state"] == "unavailable" and "NONEXISTENT" in broken.status["last_error"]
