"""Choosing examples (triage.examples), and the reference assistant's chat-model path, as pure code."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from triage.assistant.graph import ask_model
from triage.examples import Example, ExamplePool
from triage.message import Email, parse_email

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def example(pk: int, sender: str, subject: str, *, list_id: str = "", decision: str = "ignore") -> Example:
    return Example(
        pk,
        "correction",
        sender,
        list_id,
        subject,
        "",
        decision,
        None,
        "new-task",
        None,
        T0 + timedelta(hours=pk),
    )


def email(sender: str, subject: str, *, list_id: str | None = None, body: str = "") -> Email:
    headers = f"From: {sender}\r\nSubject: {subject}\r\nMessage-ID: <x@y>\r\n"
    if list_id:
        headers += f"List-Id: {list_id}\r\n"
    parsed = parse_email(f"{headers}\r\n{body}\r\n".encode(), 4000)
    assert isinstance(parsed, Email)
    return parsed


# Newest label first, as the store hands them over.
POOL = [
    example(9, "zed@other.example", "Quarterly zebrafish census"),
    example(8, "ana@one.example", "Invoice 8"),
    example(7, "news@lists.example", "Digest", list_id="weekly.lists.example"),
    example(6, "bo@one.example", "Invoice 6"),
    example(5, "ana@one.example", "Invoice 5"),
    example(4, "cy@elsewhere.example", "Zebrafish tank leaking"),
]


def pool(examples: list[Example] = POOL, account: str = "acct") -> ExamplePool:
    return ExamplePool((account, x) for x in examples)


def chosen(found: list[Example]) -> list[int]:
    return [x.decision_id for x in found]


def test_the_same_sender_comes_first_then_the_domain_newest_first() -> None:
    found = pool().choose("acct", email("Ana <ANA@one.example>", "Hello"), 3)
    assert chosen(found) == [8, 5, 6]  # ana's two (newest first), then bo of the same domain


def test_the_same_list_comes_before_the_domain() -> None:
    mail = email("someone@lists.example", "Hi", list_id="Weekly <weekly.lists.example>")
    assert chosen(pool().choose("acct", mail, 4)) == [7]


def test_similar_text_comes_last_and_rarer_shared_words_weigh_more() -> None:
    mail = email("new@unknown.example", "Zebrafish census tomorrow")
    assert chosen(pool().choose("acct", mail, 4)) == [9, 4]  # 9 shares two words, 4 one


def test_nothing_in_common_gives_no_examples_and_limit_zero_none() -> None:
    assert pool().choose("acct", email("new@unknown.example", "Lunch"), 4) == []
    assert pool().choose("acct", email("ana@one.example", "Invoice"), 0) == []


def test_examples_are_per_account() -> None:
    assert pool().choose("another", email("ana@one.example", "Invoice"), 4) == []


def test_replay_leaves_out_the_message_itself_and_later_decisions() -> None:
    mail = email("ana@one.example", "Invoice")
    assert chosen(pool().choose("acct", mail, 4, leave_out=8)) == [5, 6]
    assert chosen(pool().choose("acct", mail, 4, before=T0 + timedelta(hours=6))) == [5]


def test_an_example_survives_being_stored_as_json() -> None:
    original = POOL[0]
    assert Example.from_record(json.loads(json.dumps(original.as_record()))) == original


class _ToolCallingFake(GenericFakeChatModel):
    """A chat model that offers tool calling, as providers with structured output do."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        assert tools[0]["title"] == "triage_decision"
        return self


def test_a_model_with_structured_output_is_asked_for_the_contract() -> None:
    answer = {"decision": "ignore", "reason": "a newsletter", "confidence": 0.8}
    usage = {"input_tokens": 120, "output_tokens": 9, "total_tokens": 129}
    call = {"name": "triage_decision", "args": answer, "id": "call-1"}
    model = _ToolCallingFake(messages=iter([AIMessage(content="", tool_calls=[call], usage_metadata=usage)]))
    reply = ask_model(model, "a prompt")
    assert isinstance(reply, AIMessage)
    assert json.loads(str(reply.content)) == answer
    assert reply.usage_metadata == usage


def test_a_model_without_structured_output_answers_plain_json() -> None:
    text = '{"decision": "new-task", "title": "Fix it", "reason": "asks for work"}'
    model = GenericFakeChatModel(messages=iter([AIMessage(content=text)]))
    assert ask_model(model, "a prompt").content == text


def test_a_structured_reply_that_does_not_parse_falls_back_to_its_text() -> None:
    model = _ToolCallingFake(messages=iter([AIMessage(content='{"decision": "ignore"}')]))
    assert ask_model(model, "a prompt").content == '{"decision": "ignore"}'
