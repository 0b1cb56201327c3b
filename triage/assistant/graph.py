"""A one-node LangGraph graph: rules offline, or a chat model when one is configured.

Set `TRIAGE_ASSISTANT_MODEL` (e.g. `openai:gpt-4o-mini`, with the provider's API key in the
environment and `langchain` installed) to ask a model instead of the rules. The model is asked for the
decision contract as structured output where it supports it (the provider's JSON schema or tool-call
mode), as plain JSON, which the prompt asks for, where it does not.
"""

from __future__ import annotations

import json
import os
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage
from langgraph.graph import END, START, MessagesState, StateGraph

from triage.assistant.rules import decide

# The decision contract (triage.decision) as a JSON schema, for structured output.
DECISION_SCHEMA: dict[str, Any] = {
    "title": "triage_decision",
    "description": "How to triage one email: a new task, an existing thread, or ignore.",
    "type": "object",
    "properties": {
        "decision": {"type": "string", "enum": ["new-task", "existing-thread", "ignore"]},
        "thread_id": {"type": "string", "description": "for existing-thread: the id of an offered thread"},
        "title": {"type": "string", "description": "for new-task: a short task title"},
        "reason": {"type": "string", "description": "one sentence"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["decision", "reason"],
}


def _prompt_text(messages: list[AnyMessage]) -> str:
    for message in reversed(messages):
        if message.type == "human":
            content = message.content
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def ask_model(model: BaseChatModel, prompt: str) -> BaseMessage:
    """The model's answer as an AI message whose text is the contract's JSON object.

    Structured output where the model offers it; its raw reply (usage included) where it does not,
    or where the structured reply could not be parsed: triage parses the text either way.
    """
    try:
        structured = model.with_structured_output(DECISION_SCHEMA, include_raw=True)
    except NotImplementedError:
        return model.invoke(prompt)
    result = structured.invoke(prompt)
    assert isinstance(result, dict), "include_raw answers a dict"
    raw: BaseMessage = result["raw"]
    parsed = result.get("parsed")
    if not isinstance(parsed, dict):
        return raw
    usage = raw.usage_metadata if isinstance(raw, AIMessage) else None
    return AIMessage(
        content=json.dumps(parsed), usage_metadata=usage, response_metadata=raw.response_metadata
    )


def triage_node(state: MessagesState) -> dict[str, Any]:
    prompt = _prompt_text(state["messages"])
    model_name = os.environ.get("TRIAGE_ASSISTANT_MODEL")
    if model_name:
        from langchain.chat_models import init_chat_model  # optional, only with a model

        return {"messages": [ask_model(init_chat_model(model_name), prompt)]}
    return {"messages": [AIMessage(content=json.dumps(decide(prompt)))]}


builder = StateGraph(MessagesState)
builder.add_node("triage", triage_node)
builder.add_edge(START, "triage")
builder.add_edge("triage", END)
graph = builder.compile(name="triage")
