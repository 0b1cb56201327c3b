"""The reference triage assistant, served by `langgraph dev` as assistant `agent`."""
