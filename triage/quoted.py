"""A message's new text apart from the history it quotes, found by quotequail.

quotequail knows the reply attributions of many mail clients and languages ("On ... wrote:", "Am ...
schrieb ...:", "Le ... a écrit :"), `>` quoting, Outlook's header blocks and forward markers; this is
a thin adapter to it. What it sets apart is returned with the new text, never dropped: when it
finds no new text (an empty reply above a quote, a message that is all quote) or fails, the whole
body is the new text. A reply's own signature, below the `-- ` line of RFC 3676, goes with its
history. A forward's forwarded message is content for its reader, so a forward (by its Subject)
keeps its whole body.
"""

from __future__ import annotations

import re

# quotequail scans line by line with dozens of patterns a line (about 80 µs each): a quote starts
# within the first few hundred lines of any reply, and a body of 50,000 lines would take seconds.
_SCAN_LINES = 400
_SCAN_CHARS = 40_000
# The signature delimiter of RFC 3676 (4.3), also as clients that trim trailing spaces write it.
_SIGNATURE_DELIMITER = re.compile(r"^-- ?$", re.M)
# Forward prefixes of the Subject in the languages mail clients write them (Fwd:, FW:, WG:, TR:,
# RV:, Doorst:, ENC:), after any list tag; "Re: Fwd:" is a reply, whose history the thread has seen.
_FORWARD_SUBJECT = re.compile(r"^\s*(?:\[[^\]]{1,40}\]\s*)?(?:fwd?|wg|tr|rv|doorst|enc)\s*:", re.I)


def is_forward(subject: str) -> bool:
    return _FORWARD_SUBJECT.match(subject) is not None


def split_quoted(body: str) -> tuple[str, str]:
    """(new text, the rest: quoted history and what follows it); (body, "") when nothing is set apart.

    Text written below or between quotes (bottom posting, inline answers) is new text too.
    """
    # 25 ms to load (its patterns and typing_extensions): only once a body is split. No type hints.
    import quotequail  # type: ignore[import-untyped]

    scanned = "\n".join(body[:_SCAN_CHARS].split("\n")[:_SCAN_LINES])
    try:
        found = quotequail.unwrap(scanned)
    except Exception:  # a library's bug on odd text must not cost the message its body
        return body, ""
    if found is None:
        return body, ""
    top: str = found.get("text_top", "")
    bottom: str = found.get("text_bottom", "")
    # Both are whole lines of the scanned prefix, stripped: the top begins it, the bottom ends it.
    start = scanned.find(top) + len(top) if top else 0
    end = scanned.rfind(bottom) if bottom else len(body)
    new = "\n\n".join(part for part in (top, body[end:].strip() if bottom else "") if part)
    quoted = body[start:end].strip()
    if not new.strip() or not quoted:
        return body, ""
    return _without_signature(new, quoted)


def _without_signature(new: str, quoted: str) -> tuple[str, str]:
    """The new text less the signature it ends with, which goes after the history it set apart."""
    delimiters = list(_SIGNATURE_DELIMITER.finditer(new))
    if not delimiters or not new[: delimiters[-1].start()].strip():
        return new, quoted
    cut = delimiters[-1].start()
    return new[:cut].rstrip(), f"{quoted}\n\n{new[cut:].strip()}"
