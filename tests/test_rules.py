"""Rules before the model: header conditions, all of which must match, the first matching rule deciding."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from triage.message import Email, parse_email
from triage.rules import Rule, first_match


def _email(headers: str) -> Email:
    parsed = parse_email(f"{headers}\nMessage-ID: <m@x>\n\nbody\n".encode(), 4000)
    assert isinstance(parsed, Email)
    return parsed


def _rule(**conditions: str) -> Rule:
    return Rule.model_validate({"name": "r", "decision": "ignore", **conditions})


NEWSLETTER = _email(
    "From: Ann Example <ann@example.com>, bob@example.com\n"
    "To: Team <team@example.com>\n"
    "Cc: carl@example.org\n"
    "Subject: Weekly NEWS\n"
    "List-Id: Weekly <weekly.example.com>\n"
    "Auto-Submitted: auto-generated\n"
    "Precedence: bulk"
)
PLAIN = _email("From: dan@example.net\nTo: team@example.com\nSubject: A question")


@pytest.mark.parametrize(
    ("condition", "pattern"),
    [
        # Each header is searched as one line: every address, name and all, joined by ", ".
        ("from", r"^Ann Example <ann@example\.com>, bob@example\.com$"),
        ("to", r"^Team <team@example\.com>, carl@example\.org$"),  # To and Cc together
        ("subject", r"^weekly news$"),  # case-insensitive
        ("list_id", r"^Weekly <weekly\.example\.com>$"),
        ("auto_submitted", r"^auto-generated$"),
        ("precedence", r"^bulk$"),
    ],
)
def test_each_condition_reads_its_own_header(condition: str, pattern: str) -> None:
    rule = _rule(**{condition: pattern})
    assert rule.matches(NEWSLETTER)
    assert not rule.matches(PLAIN)


@pytest.mark.parametrize("condition", ["list_id", "auto_submitted", "precedence"])
def test_a_missing_header_is_empty_and_matches_no_pattern_that_needs_a_character(condition: str) -> None:
    # The example configuration's newsletter rule is `list_id = "."`: mail from no list is not one.
    assert not _rule(**{condition: "."}).matches(PLAIN)
    assert _rule(**{condition: "^$"}).matches(PLAIN)


def test_a_pattern_is_searched_anywhere_in_the_value() -> None:
    assert _rule(subject="news").matches(NEWSLETTER)
    assert _rule(**{"from": "@EXAMPLE.com"}).matches(NEWSLETTER)
    assert _rule(to="example.org").matches(NEWSLETTER)  # in Cc only


def test_every_condition_given_must_match() -> None:
    assert _rule(**{"from": "ann@", "subject": "weekly"}).matches(NEWSLETTER)
    assert not _rule(**{"from": "ann@", "subject": "monthly"}).matches(NEWSLETTER)
    assert not _rule(**{"from": "zed@", "subject": "weekly"}).matches(NEWSLETTER)


def test_the_first_matching_rule_decides_in_order() -> None:
    lists = Rule.model_validate({"name": "lists", "decision": "ignore", "list_id": "."})
    team = Rule.model_validate({"name": "team", "decision": "new-task", "to": "team@"})
    assert first_match([lists, team], NEWSLETTER) is lists
    assert first_match([team, lists], NEWSLETTER) is team
    assert first_match([lists, team], PLAIN) is team
    assert first_match([lists], PLAIN) is None
    assert first_match([], NEWSLETTER) is None


def test_a_rule_needs_a_name_a_decision_and_a_condition() -> None:
    with pytest.raises(ValidationError, match="has no condition"):
        Rule.model_validate({"name": "r", "decision": "ignore"})
    with pytest.raises(ValidationError):
        Rule.model_validate({"name": "", "decision": "ignore", "subject": "x"})
    with pytest.raises(ValidationError):
        Rule.model_validate({"name": "r", "decision": "escalate", "subject": "x"})
    with pytest.raises(ValidationError):
        Rule.model_validate({"name": "r", "decision": "ignore", "body": "x"})  # not a condition


@pytest.mark.parametrize("condition", ["from", "to", "subject", "list_id", "auto_submitted", "precedence"])
def test_a_condition_that_is_not_a_regular_expression_is_refused(condition: str) -> None:
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        _rule(**{condition: "(unclosed"})
