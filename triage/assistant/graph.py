"""A one-node LangGraph graph: rules offline, or a chat model when one is configured.

Set `TRIAGE_ASSISTANT_MODEL` (e.g. `openai:gpt-4o-mini`, with the provider's API key in the
environment and `langchain` installed) to ask a model instead of the rules.
"""

from __future__ import annotations

import json
import os
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage
from langgraph.graph import END, START, MessagesState, StateGraph

from triage.assistant.rules import decide


def _prompt_text(messages: list[AnyMessage]) -> str:
    for message in reversed(messages):
        if message.type == "human":
            content = message.content
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def triage_node(state: MessagesState) -> dict[str, Any]:
    prompt = _prompt_text(state["messages"])
    model_name = os.environ.get("TRIAGE_ASSISTANT_MODEL")
    if model_name:
        from langchain.chat_models import init_chat_model  # optional, only with a model

        reply = init_chat_model(model_name).invoke(prompt)
        return {"messages": [reply]}
    return {"messages": [AIMessage(content=json.dumps(decide(prompt)))]}


builder = StateGraph(MessagesState)
builder.add_node("triage", triage_node)
builder.add_edge(START, "triage")
builder.add_edge("triage", END)
graph = builder.compile(name="triage")
