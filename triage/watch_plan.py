"""How the watched mailboxes of one account share its connection budget (imap.max_connections).

Up to the budget, every mailbox has a connection of its own (IDLE, or polling where the server
lacks it). Past it, where the server offers NOTIFY (RFC 5465), one connection hears about every
mailbox and the rest of the budget fetches; elsewhere the mailboxes that matter most (INBOX first,
then the config's order) keep a connection of their own and one connection checks the others in
turn, every `watch.poll_interval_s`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinkPlan:
    own: list[str]  # mailboxes with a connection of their own
    shared: list[str]  # mailboxes served in turn by the `fetchers` shared connections
    fetchers: int
    notify: bool  # one more connection watches `shared` through NOTIFY

    @property
    def connections(self) -> int:
        return len(self.own) + self.fetchers + int(self.notify)

    def describe(self, poll_interval_s: float) -> str:
        """The plan in a log line."""
        parts = []
        if self.own:
            parts.append(f"a connection each for {', '.join(self.own)}")
        if self.notify:
            parts.append(f"NOTIFY for {len(self.shared)} mailboxes, fetched over {self.fetchers}")
        elif self.shared:
            parts.append(f"one connection checking {len(self.shared)} more every {poll_interval_s:g} s")
        count = f"{self.connections} connection{'s' if self.connections != 1 else ''}"
        return f"{count}: " + "; ".join(parts)


def by_priority(mailboxes: list[str]) -> list[str]:
    """INBOX first (new mail lands there), then the order the config gives."""
    unique = list(dict.fromkeys(mailboxes))
    return sorted(unique, key=lambda name: name.upper() != "INBOX")


def needs_capabilities(mailboxes: list[str], budget: int, mode: str) -> bool:
    """Whether the plan depends on the server offering NOTIFY (so a connection must ask it first)."""
    return len(by_priority(mailboxes)) > budget >= 2 and mode == "auto"


def plan_links(mailboxes: list[str], budget: int, mode: str, notify_offered: bool) -> LinkPlan:
    """Which connections watch which mailboxes, never more than `budget` of them."""
    ordered = by_priority(mailboxes)
    if len(ordered) <= budget:
        return LinkPlan(own=ordered, shared=[], fetchers=0, notify=False)
    if notify_offered and needs_capabilities(ordered, budget, mode):
        return LinkPlan(own=[], shared=ordered, fetchers=budget - 1, notify=True)
    return LinkPlan(own=ordered[: budget - 1], shared=ordered[budget - 1 :], fetchers=1, notify=False)
