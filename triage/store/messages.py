"""The messages table: what is kept of each message, and the Email rebuilt from it for a replay.

`message_values` and `stored_email` are each other's inverse: what a template reads of an Email is
stored, so a replay renders the prompt that was sent.
"""

from __future__ import annotations

import email.utils
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from triage.clock import utc_now
from triage.message import Address, Attachment, Email
from triage.sources import RawMessage
from triage.store import tables
from triage.store.conflicts import inserted_id
from triage.store.models import StoredMessage
from triage.store.tables import as_utc

_MESSAGES = tables.messages
# Built once (see store.decisions): the bound names below are not column names.
_UPDATE_MESSAGE = update(_MESSAGES).where(_MESSAGES.c.id == bindparam("message_pk"))
_MESSAGE_PK = select(_MESSAGES.c.id).where(
    *(_MESSAGES.c[name] == bindparam(name) for name in ("account", "mailbox", "uidvalidity", "uid"))
)


def identity(raw: RawMessage) -> dict[str, Any]:
    return {"account": raw.account, "mailbox": raw.mailbox, "uidvalidity": raw.uidvalidity, "uid": raw.uid}


def write_message(
    connection: Connection, raw: RawMessage, email: Email | None, message_pk: int | None
) -> tuple[int, bool]:
    """Insert the message's row, or refresh its headers; its id, and whether this call made it."""
    values = message_values(email) if email is not None else {}
    if message_pk is None:
        new = {
            **identity(raw),
            "size": len(raw.raw),
            "gmail_thread_id": raw.gmail_thread_id,
            "first_seen_at": utc_now(),
            **values,
        }
        made = inserted_id(connection, _MESSAGES, new)
        if made is not None:
            return made, True
        message_pk = int(connection.execute(_MESSAGE_PK, identity(raw)).scalar_one())  # made elsewhere
    if values:
        connection.execute(_UPDATE_MESSAGE, {"message_pk": message_pk, **values})
    return message_pk, False


def message_values(email: Email) -> dict[str, Any]:
    """The columns an Email fills."""
    return {
        "message_id": email.message_id,
        "subject": email.subject,
        "sender": email.sender,
        "recipients": ", ".join(str(a) for a in [*email.to, *email.cc]),
        "sent_at": email.date,
        "in_reply_to": email.in_reply_to,
        "references": email.references,
        "list_id": email.list_id,
        "auto_submitted": email.auto_submitted,
        "precedence": email.precedence,
        "body_excerpt": email.body,
        "parse_warnings": email.warnings,
        # The rest of what a template reads, so a replay can render this message again.
        "from_addresses": [[a.name, a.email] for a in email.from_],
        "to_addresses": [[a.name, a.email] for a in email.to],
        "cc_addresses": [[a.name, a.email] for a in email.cc],
        "reply_to_addresses": [[a.name, a.email] for a in email.reply_to],
        "sent_at_text": email.date.isoformat() if email.date else None,
        "list_unsubscribe": email.list_unsubscribe,
        "attachments": [asdict(a) for a in email.attachments],
        "body_chars": email.body_chars,
        "quoted_excerpt": email.quoted or None,
    }


def stored_email(message: StoredMessage) -> Email:
    """The Email a stored message was rendered from, rebuilt from its columns.

    Rows written before migration 0003 lack some fields; their display names, Cc, Reply-To,
    List-Unsubscribe and attachments are then unknown and their prompts may differ slightly.
    """
    body = message.body_excerpt or ""
    sent_at = as_utc(message.sent_at) if message.sent_at is not None else None
    return Email(
        subject=message.subject or "",
        from_=_stored_addresses(message.from_addresses, message.sender),
        to=_stored_addresses(message.to_addresses, message.recipients),
        cc=_stored_addresses(message.cc_addresses, None),
        reply_to=_stored_addresses(message.reply_to_addresses, None),
        date=datetime.fromisoformat(message.sent_at_text) if message.sent_at_text else sent_at,
        message_id=message.message_id,
        in_reply_to=message.in_reply_to,
        references=list(message.references or []),
        list_id=message.list_id,
        list_unsubscribe=message.list_unsubscribe,
        auto_submitted=message.auto_submitted,
        precedence=message.precedence,
        body=body,
        body_chars=message.body_chars if message.body_chars is not None else len(body),
        attachments=[Attachment(**a) for a in message.attachments or []],
        warnings=list(message.parse_warnings or []),
        quoted=message.quoted_excerpt or "",
    )


def _stored_addresses(pairs: list[list[str]] | None, fallback: str | None) -> list[Address]:
    if pairs is not None:
        return [Address(name, address) for name, address in pairs]
    return [Address(n, a) for n, a in email.utils.getaddresses([fallback or ""]) if n or a]
