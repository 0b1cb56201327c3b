"""`triage rules suggest`: rules for the senders and lists whose labels all agree.

A person who corrected (or filed, or confirmed) three messages of one sender the same way, and none
otherwise, is saying what a rule says, without a run's cost. Suggestions are printed in the config's
own form for the user to read and paste into `[routing]`; nothing is changed here.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from triage.examples import POOL_LIMIT, Example
from triage.store.decisions import Store
from triage.store.labels import latest_labels

_RULE_DECISIONS = ("new-task", "ignore")  # a rule cannot prove a thread


@dataclass(slots=True)
class Suggestion:
    """A sender or list whose labels agree, with the evidence."""

    what: str  # "from" or "list_id"
    value: str
    decision: str
    kinds: Counter[str] = field(default_factory=Counter)

    @property
    def name(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.value.lower()).strip("-")
        return f"{self.decision}-{slug}"

    @property
    def pattern(self) -> str:
        """A regular expression matching the whole address or list id, not a longer one."""
        opening, closing = ("(^|[<\\s])", "($|>)") if self.what == "from" else ("(^|<)", "($|>)")
        return f"{opening}{re.escape(self.value)}{closing}"

    def toml(self) -> str:
        evidence = ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in sorted(self.kinds.items()))
        whose = "mail from" if self.what == "from" else "the list"
        return "\n".join(
            [
                f"# {whose} {self.value}: {sum(self.kinds.values())} labels agree ({evidence}), none against",
                "[[routing.rules]]",
                f"name = {_toml_string(self.name)}",
                f"{self.what} = {_toml_string(self.pattern)}",
                f"decision = {_toml_string(self.decision)}",
            ]
        )


def _toml_string(text: str) -> str:
    """A TOML literal string where it can be one (no escapes to read), else a basic one."""
    if "'" not in text and "\n" not in text:
        return f"'{text}'"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def suggest(store: Store, *, at_least: int = 3) -> list[Suggestion]:
    """Senders, then lists, with `at_least` labels all to one decision (new-task or ignore)."""
    groups: dict[tuple[str, str], list[Example]] = defaultdict(list)
    with store.engine.connect() as connection:
        for found in latest_labels(connection, POOL_LIMIT):
            example = Example.of(found)
            if example.sender:
                groups["from", example.sender].append(example)
            if example.list_id:
                groups["list_id", example.list_id].append(example)
    suggestions = []
    for (what, value), examples in sorted(groups.items()):
        decisions = {example.decision for example in examples}
        if len(examples) < at_least or len(decisions) != 1 or not decisions <= set(_RULE_DECISIONS):
            continue
        kinds = Counter(example.kind for example in examples)
        suggestions.append(Suggestion(what, value, decisions.pop(), kinds))
    return suggestions
