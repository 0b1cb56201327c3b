"""triage: ask a LangGraph assistant what each new email is, and keep a decision log."""

__version__ = "0.1.0"
