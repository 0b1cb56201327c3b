"""Rules before the model: ordered header conditions that decide without a run.

Each rule names the headers it looks at; every condition given must match (regular expressions,
case-insensitive, searched anywhere in the header's value). The first matching rule decides, and the
decision is recorded with `decided_by = rule:NAME`.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from triage.decision import DecisionKind

if TYPE_CHECKING:  # the configuration loads this module: reading the log needs no mail parser
    from triage.message import Email


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    decision: DecisionKind
    title: str | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    subject: str | None = None
    list_id: str | None = None
    auto_submitted: str | None = None
    precedence: str | None = None

    @field_validator("from_", "to", "subject", "list_id", "auto_submitted", "precedence")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _has_a_condition(self) -> Rule:
        if not self._conditions:
            raise ValueError(f"rule {self.name!r} has no condition (from, to, subject, list_id, ...)")
        return self

    @cached_property
    def _conditions(self) -> list[tuple[str, re.Pattern[str]]]:
        wanted = {
            "from": self.from_,
            "to": self.to,
            "subject": self.subject,
            "list_id": self.list_id,
            "auto_submitted": self.auto_submitted,
            "precedence": self.precedence,
        }
        return [(name, re.compile(pattern, re.I)) for name, pattern in wanted.items() if pattern is not None]

    def matches(self, email: Email) -> bool:
        values = {
            "from": ", ".join(str(a) for a in email.from_),
            "to": ", ".join(str(a) for a in [*email.to, *email.cc]),
            "subject": email.subject,
            "list_id": email.list_id or "",
            "auto_submitted": email.auto_submitted or "",
            "precedence": email.precedence or "",
        }
        return all(p.search(values[name]) for name, p in self._conditions)


def first_match(rules: list[Rule], email: Email) -> Rule | None:
    return next((rule for rule in rules if rule.matches(email)), None)
