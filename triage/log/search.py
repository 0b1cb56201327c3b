"""`triage log -q WORDS`: the condition "every word is in the subject, sender, body or reason", in
each database's own full-text search.

Users never write a search engine's syntax: each word is a phrase of the letters and digits in it
(`foo-bar` is `foo` then `bar`), all words are required, and a trailing `*` makes the last part of
a word a prefix. SQLite answers from its FTS5 index, PostgreSQL from `decisions.search_document`
(migration 0014), any other database through LIKE over the four fields (slower, no extension).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, column, func, literal_column, or_, select, table

from triage.errors import TriageError
from triage.store.tables import SEARCH_DOCUMENT, SEARCH_INDEX, decisions, messages

# The dialects whose search reads the decisions table alone (no join with the messages).
INDEXED = ("sqlite", "postgresql")
_LETTERS_AND_DIGITS = re.compile(r"[^\W_]+")


def text_condition(text: str, dialect: str) -> ColumnElement[bool]:
    """Decisions whose subject, sender, body or reason holds every word of `text`."""
    if dialect == "sqlite":
        index = table(SEARCH_INDEX, column("rowid"))
        match = literal_column(SEARCH_INDEX).op("MATCH")(fts5_query(text))
        return decisions.c.id.in_(select(index.c.rowid).where(match))
    if dialect == "postgresql":
        document: ColumnElement[Any] = literal_column(f"{decisions.name}.{SEARCH_DOCUMENT}")
        return document.op("@@")(func.to_tsquery(literal_column("'simple'"), tsquery(text)))
    pattern = f"%{escape_like(text)}%"
    searched = (messages.c.subject, messages.c.sender, messages.c.body_excerpt, decisions.c.reason)
    return or_(*(part.ilike(pattern, escape="\\") for part in searched))


def fts5_query(text: str) -> str:
    """Words as FTS5 phrases, all required; `word*` is a prefix."""
    terms = []
    for word in text.split():
        prefix = word.endswith("*") and len(word) > 1
        word = word.rstrip("*").replace('"', '""')
        if word:
            terms.append(f'"{word}"' + ("*" if prefix else ""))
    if not terms:
        raise TriageError(f"nothing to search for in {text!r}")
    return " ".join(terms)


def tsquery(text: str) -> str:
    """The same words as a PostgreSQL tsquery: each a phrase (`<->`) of its letter-and-digit runs,
    all required (`&`), `word*` a prefix of its last run (`:*`). Runs hold no quote to escape."""
    phrases = []
    for word in text.split():
        runs = _LETTERS_AND_DIGITS.findall(word)
        if runs:
            lexemes = [f"'{run}'" for run in runs]
            if word.endswith("*"):
                lexemes[-1] += ":*"
            phrases.append(" <-> ".join(lexemes))
    if not phrases:
        raise TriageError(f"nothing to search for in {text!r}")
    return " & ".join(f"({phrase})" for phrase in phrases)


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
