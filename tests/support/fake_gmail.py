"""A fake Gmail IMAP server on loopback, for tests of Gmail-only behaviour.

Dovecot cannot offer Gmail's X-GM-EXT-1, so this small but real IMAP4rev1 peer (a socket, a
thread per connection) speaks the part of IMAP that triage's client uses, the way Gmail does:

- login by ``AUTHENTICATE XOAUTH2`` (or OAUTHBEARER) with an access token only. ``LOGIN`` is
  refused as Gmail refuses an account password (``NO [ALERT] Application-specific password
  required``; app passwords are not modelled). A wrong token gets Gmail's error challenge (a base64
  JSON ``{"status":"400",...}``), then, whatever the client answers, ``NO [AUTHENTICATIONFAILED]``.
- folders are labels: every message is in ``[Gmail]/All Mail``; INBOX is the ``\\Inbox`` label
  and any other folder the label of its name. COPY adds the target's label (the same message, a new
  UID there), MOVE relabels (adds the target's, removes the source's), EXPUNGE of a ``\\Deleted``
  message removes that folder's label (the message stays in All Mail), and X-GM-LABELS shows a
  message's labels but the selected folder's, as Gmail's does. Flags are the message's, in every
  folder; ``\\Deleted`` is per folder.
- X-GM-THRID, X-GM-MSGID and X-GM-LABELS (fetch, store, search), IDLE, MOVE and UIDPLUS;
  BODYSTRUCTURE, ``BODY[HEADER]``, ``BODY[TEXT]``, ``BODY[n.m]`` and partial fetches (``<0.n>``).

``gmail=False`` plays a plain server instead: LOGIN with ``password``, no X-GM-EXT-1, and folders
that hold copies (COPY makes an independent copy; EXPUNGE deletes). ``without`` drops other
capabilities (MOVE, UIDPLUS, IDLE). Mail is held in memory: tests add messages, inspect what a
client did (flags, labels, where a message went, ``commands``, ``logins``, ``sent_bytes``) and wake
idling clients with ``notify_new``. ``max_connections`` refuses a login past that many as Gmail
does (``NO [ALERT] Too many simultaneous connections.``); STATUS answers MESSAGES, UIDNEXT and
UIDVALIDITY.

Not implemented: TLS and STARTTLS, APPEND and literals in commands, sequence-number (non-UID)
FETCH/STORE/SEARCH/COPY/MOVE, ENVELOPE, ``BODY[n.MIME]`` and ``HEADER.FIELDS``, entering attached
messages (message/rfc822 is a leaf), search keys other than ALL, NOT, OR, UID, SINCE, BEFORE, ON,
SEEN, UNSEEN, DELETED, UNDELETED, FLAGGED, X-GM-THRID and X-GM-LABELS (no X-GM-RAW), CLOSE,
UNSELECT, DELETE, RENAME, LSUB, \\Recent, Gmail's other system folders (Sent, Trash...),
modified UTF-7 (mailbox names are kept as sent), and telling one connection about another's
expunges (only new mail is announced: by NOOP, IDLE and notify_new).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email
import email.policy
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from types import TracebackType
from typing import TypeAlias

CAPABILITIES = ("IMAP4rev1", "IDLE", "MOVE", "UIDPLUS", "X-GM-EXT-1")
# Offered before login, as Gmail does; LOGIN is answered, but refused (see cmd_login).
GMAIL_AUTH = ("SASL-IR", "AUTH=XOAUTH2", "AUTH=OAUTHBEARER")
SYSTEM_FLAGS = "\\Answered \\Flagged \\Draft \\Deleted \\Seen"
ALL_MAIL = "[Gmail]/All Mail"
INBOX_LABEL = "\\Inbox"
# What Gmail answers a login past the connections it allows an account.
TOO_MANY_CONNECTIONS = "[ALERT] Too many simultaneous connections. (Failure)"
# What Gmail answers a password login, and a refused token (the challenge, then the tagged NO).
APP_PASSWORD_REQUIRED = "[ALERT] Application-specific password required: https://support.google.com/accounts/answer/185833 (Failure)"
TOKEN_ERROR = base64.b64encode(
    b'{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}'
).decode()
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MAX_LINE = 64 * 1024
_STOP_DEADLINE_S = 5.0
# Atoms may hold a bracketed section with spaces and parentheses: BODY.PEEK[HEADER.FIELDS (TO)].
_ATOM = re.compile(r'(?:[^\s()"\[]|\[[^\]]*\])+')
_FLAG_KEYS = {
    "SEEN": ("\\Seen", True),
    "UNSEEN": ("\\Seen", False),
    "DELETED": ("\\Deleted", True),
    "UNDELETED": ("\\Deleted", False),
    "FLAGGED": ("\\Flagged", True),
}
_FETCH_ITEMS = {"UID", "FLAGS", "RFC822.SIZE", "INTERNALDATE", "RFC822", "BODYSTRUCTURE"}
_GMAIL_ITEMS = {"X-GM-THRID", "X-GM-MSGID", "X-GM-LABELS"}
# BODY[section]<origin.count>, BODY.PEEK too; sections: whole, HEADER, TEXT or a part number.
_BODY_ITEM = re.compile(r"BODY(\.PEEK)?\[(|HEADER|TEXT|[1-9]\d*(?:\.[1-9]\d*)*)\](?:<(\d+)\.(\d+)>)?")

Token: TypeAlias = "str | list[Token]"
Predicate: TypeAlias = Callable[["_Entry", "_Mailbox"], bool]


@dataclass(eq=False)
class _Mail:
    """A message once, as Gmail keeps it: its labels say which folders show it."""

    raw: bytes
    thrid: int
    msgid: int
    internal_date: datetime
    labels: set[str] = field(default_factory=set)
    flags: set[str] = field(default_factory=set)


@dataclass(eq=False)
class _Entry:
    """A message as one folder shows it: under a UID of that folder's, with its own \\Deleted."""

    uid: int
    mail: _Mail
    deleted: bool = False

    @property
    def raw(self) -> bytes:
        return self.mail.raw

    @property
    def thrid(self) -> int:
        return self.mail.thrid

    @property
    def msgid(self) -> int:
        return self.mail.msgid

    @property
    def internal_date(self) -> datetime:
        return self.mail.internal_date

    @property
    def labels(self) -> set[str]:
        return self.mail.labels

    @property
    def flags(self) -> set[str]:
        return self.mail.flags | ({"\\Deleted"} if self.deleted else set())


@dataclass(frozen=True)
class StoredMessage:
    """A message as a folder shows it, at one moment: labels as X-GM-LABELS there lists them (the
    folder's own left out, e.g. no \\Inbox in INBOX) and flags as sent (e.g. "\\Seen")."""

    uid: int
    raw: bytes
    thrid: int
    msgid: int
    internal_date: datetime
    labels: set[str]
    flags: set[str]


@dataclass(eq=False)
class _Mailbox:
    name: str
    uidvalidity: int = 1
    uidnext: int = 1
    messages: list[_Entry] = field(default_factory=list)

    def append(self, mail: _Mail) -> _Entry:
        entry, self.uidnext = _Entry(self.uidnext, mail), self.uidnext + 1
        self.messages.append(entry)
        return entry

    def entry_of(self, mail: _Mail) -> _Entry | None:
        return next((entry for entry in self.messages if entry.mail is mail), None)

    def seq(self, entry: _Entry) -> int:
        return self.messages.index(entry) + 1


class _Reply(Exception):
    """Ends a command with a tagged NO or BAD."""

    def __init__(self, status: str, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


class FakeGmail:
    """An in-memory Gmail-like IMAP server on 127.0.0.1, running while used as a context manager.

    It takes `token` by XOAUTH2 (Gmail); with ``gmail=False``, `password` by LOGIN (a plain server).
    """

    def __init__(
        self,
        username: str = "me@example.com",
        password: str = "pw",
        *,
        token: str = "ya29.fake-gmail-access-token",
        gmail: bool = True,
        without: Iterable[str] = (),
        max_connections: int | None = None,
    ) -> None:
        dropped = {name.upper() for name in without} | (set() if gmail else {"X-GM-EXT-1"})
        self.capabilities = tuple(name for name in CAPABILITIES if name.upper() not in dropped)
        self.gmail = gmail
        # Logged-in connections allowed at once (Gmail: 15); a login past them is refused.
        self.max_connections = max_connections
        self.most_logged_in = 0  # the most connections logged in at once
        self.username, self.password, self.token = username, password, token
        self.host, self.port = "127.0.0.1", 0
        self.commands: list[str] = []  # command lines received, tags stripped, credentials masked
        self.logins: list[tuple[str, str, bool]] = []  # (LOGIN or mechanism, user, accepted)
        self.sent_bytes = 0  # everything written to clients
        self.lock = threading.RLock()
        self._idle_changed = threading.Condition(self.lock)
        self._mailboxes = {"INBOX": _Mailbox("INBOX")}
        if gmail:
            self._mailboxes[ALL_MAIL] = _Mailbox(ALL_MAIL)
        self._sessions: set[_Session] = set()
        self._next_msgid = 1
        self._refusals: dict[str, int] = {}  # command prefix -> how many more to refuse
        self._tcp: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def greeting_capabilities(self) -> tuple[str, ...]:
        return self.capabilities + (GMAIL_AUTH if self.gmail else ())

    def refuse(self, prefix: str, times: int = 1) -> None:
        """Answer the next `times` commands starting with `prefix` (e.g. "UID MOVE") with a
        temporary failure, as Gmail does when it is overloaded."""
        with self.lock:
            self._refusals[prefix.upper()] = times

    def _refused(self, command: str) -> bool:
        for prefix, left in self._refusals.items():
            if left and command.upper().startswith(prefix):
                self._refusals[prefix] = left - 1
                return True
        return False

    def __enter__(self) -> FakeGmail:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        self._tcp = _Server(self)
        self.port = self._tcp.server_address[1]
        self._thread = threading.Thread(
            target=self._tcp.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-gmail", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, cut open connections and wait (with a deadline) for every thread."""
        if self._tcp is None or self._thread is None:
            return
        tcp, self._tcp = self._tcp, None
        tcp.shutdown()
        tcp.server_close()
        deadline = time.monotonic() + _STOP_DEADLINE_S
        self._thread.join(_STOP_DEADLINE_S)
        for connection, _ in tcp.connections:
            with contextlib.suppress(OSError):  # already closed
                connection.shutdown(socket.SHUT_RDWR)
        threads = [self._thread, *(thread for _, thread in tcp.connections)]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if alive := [thread.name for thread in threads if thread.is_alive()]:
            raise RuntimeError(f"fake Gmail threads still running after {_STOP_DEADLINE_S} s: {alive}")

    def add_message(
        self,
        mailbox: str,
        raw: bytes,
        *,
        thrid: int,
        labels: Iterable[str] = (),
        flags: Iterable[str] = (),
        internal_date: datetime | None = None,
    ) -> int:
        """Deliver a message to a mailbox (made if needed) with more labels; return its UID there."""
        moment = internal_date or datetime.now(UTC).replace(microsecond=0)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        with self.lock:
            box = self._box(mailbox)
            mail = _Mail(bytes(raw), thrid, self._new_msgid(), moment, set(), set(flags))
            if not self.gmail:
                mail.labels |= set(labels)
                return box.append(mail).uid
            self._mailboxes[ALL_MAIL].append(mail)
            self.file(box, mail)
            for label in labels:
                self.add_label(mail, label)
            entry = box.entry_of(mail)
            assert entry is not None
            return entry.uid

    def message(self, mailbox: str, uid: int) -> StoredMessage:
        """How a mailbox shows its UID now; KeyError when it does not hold that UID."""
        with self.lock:
            box = self._mailboxes.get(_canonical(mailbox))
            for entry in box.messages if box else ():
                if entry.uid == uid:
                    labels = entry.labels - {self.label_of(_canonical(mailbox))}
                    return StoredMessage(
                        uid,
                        entry.raw,
                        entry.thrid,
                        entry.msgid,
                        entry.internal_date,
                        labels,
                        set(entry.flags),
                    )
        raise KeyError(f"{mailbox} has no UID {uid}")

    def uids(self, mailbox: str) -> list[int]:
        """The UIDs a mailbox holds, ascending (empty when it does not exist)."""
        with self.lock:
            box = self._mailboxes.get(_canonical(mailbox))
            return [entry.uid for entry in box.messages] if box else []

    @property
    def mailboxes(self) -> list[str]:
        with self.lock:
            return sorted(self._mailboxes)

    def notify_new(self, mailbox: str = "INBOX") -> int:
        """Send `* n EXISTS` to the connections idling in a mailbox; return how many were told."""
        with self.lock:
            idling = [session for session in self._sessions if session.idling_in(mailbox)]
            for session in idling:
                session.announce(always=True)
            return len(idling)

    def wait_idling(self, mailbox: str = "INBOX", timeout: float = 5.0) -> None:
        """Block until some connection idles in a mailbox; TimeoutError after `timeout` seconds."""
        with self._idle_changed:
            if not self._idle_changed.wait_for(
                lambda: any(session.idling_in(mailbox) for session in self._sessions), timeout
            ):
                raise TimeoutError(f"no connection began to IDLE in {mailbox} within {timeout} s")

    # -- folders as labels (under the lock) ---------------------------------------------------

    def label_of(self, folder: str) -> str | None:
        """The label a folder shows (None: All Mail shows every message; a plain server, none)."""
        if not self.gmail or folder == ALL_MAIL:
            return None
        return INBOX_LABEL if folder == "INBOX" else folder

    def add_label(self, mail: _Mail, label: str) -> None:
        """Label a message; it shows in the label's folder, made if needed (Gmail makes labels on
        demand). System labels other than \\Inbox (\\Important, \\Starred) have no folder here."""
        mail.labels.add(label)
        folder = "INBOX" if label == INBOX_LABEL else None if label.startswith("\\") else label
        if folder is not None:
            box = self._box(folder)
            if box.entry_of(mail) is None:
                box.append(mail)

    def remove_label(self, mail: _Mail, label: str) -> None:
        """Unlabel a message; it leaves the label's folder (and stays in All Mail)."""
        mail.labels.discard(label)
        box = self._mailboxes.get("INBOX" if label == INBOX_LABEL else label)
        entry = box.entry_of(mail) if box is not None else None
        if box is not None and entry is not None:
            box.messages.remove(entry)

    def file(self, box: _Mailbox, mail: _Mail) -> _Entry:
        """Make `box` show a message: on Gmail by its label, on a plain server as a new copy."""
        if not self.gmail:
            return box.append(
                _Mail(mail.raw, mail.thrid, self._new_msgid(), mail.internal_date, set(), set(mail.flags))
            )
        label = self.label_of(box.name)
        if label is not None:
            self.add_label(mail, label)
        entry = box.entry_of(mail)
        assert entry is not None, f"{box.name} does not show the message"
        return entry

    def _box(self, name: str) -> _Mailbox:
        name = _canonical(name)
        return self._mailboxes.setdefault(name, _Mailbox(name))

    def _new_msgid(self) -> int:
        self._next_msgid += 1
        return 1_700_000_000_000_000_000 + self._next_msgid - 1


class _Server(socketserver.TCPServer):
    """Listens on a free loopback port; one thread per connection, each remembered for shutdown."""

    allow_reuse_address = True

    def __init__(self, fake: FakeGmail) -> None:
        self.fake = fake
        self.connections: list[tuple[socket.socket, threading.Thread]] = []
        super().__init__((fake.host, 0), _Session)

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        thread = threading.Thread(
            target=self._serve, args=(request, client_address), name=f"fake-gmail-{client_address}"
        )
        thread.daemon = True
        self.connections.append((request, thread))
        thread.start()

    def _serve(self, request: socket.socket, client_address: object) -> None:
        try:
            self.finish_request(request, client_address)  # type: ignore[arg-type]
        except Exception:
            self.handle_error(request, client_address)  # type: ignore[arg-type]
        finally:
            self.shutdown_request(request)


class _Session(socketserver.StreamRequestHandler):
    """One client connection: reads command lines and answers them."""

    server: _Server

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # answers in pieces
        self.fake = self.server.fake
        self.user: str | None = None
        self.mailbox: _Mailbox | None = None
        self.readonly = False
        self.idling = False
        self.reported = 0  # the EXISTS count this client was last told
        self._write_lock = threading.Lock()

    def handle(self) -> None:
        with self.fake.lock:
            self.fake._sessions.add(self)
        try:
            self.send(f"* OK [CAPABILITY {' '.join(self.fake.greeting_capabilities)}] Gimap ready")
            while line := self.rfile.readline(_MAX_LINE):
                if not self.command(line.rstrip(b"\r\n").decode("utf-8", "replace")):
                    break
        except OSError:
            pass  # the client went away, or the server is shutting down
        finally:
            with self.fake.lock:
                self.fake._sessions.discard(self)

    def command(self, line: str) -> bool:
        """Run one command line; False when the connection is to end."""
        tag, _, rest = line.partition(" ")
        name = rest.split(" ", 1)[0].upper()
        # Never a credential: LOGIN's password, AUTHENTICATE's initial response (SASL-IR).
        words = rest.split(" ")
        shown = (
            " ".join([*words[:2], "***"])
            if name == "LOGIN" or (len(words) > 2 and name == "AUTHENTICATE")
            else rest
        )
        with self.fake.lock:
            self.fake.commands.append(shown)
            refused = self.fake._refused(rest)
        if refused:
            self.send(f"{tag} NO [UNAVAILABLE] Temporary System Problem. Try again later.")
            return True
        if not tag or not rest:
            self.send(f"{tag or '*'} BAD missing command")
            return True
        try:
            args = tokenize(rest)[1:]
            if name == "IDLE":
                text = self.cmd_idle(args)
            elif name == "AUTHENTICATE":
                text = self.cmd_authenticate(args)
            else:
                with self.fake.lock:
                    text = self.dispatch(name, args)
        except _Reply as reply:
            self.send(f"{tag} {reply.status} {reply.text}")
        except ValueError as exc:
            self.send(f"{tag} BAD {exc}")
        else:
            self.send(f"{tag} OK {text}")
        return name != "LOGOUT"

    def dispatch(self, name: str, args: list[Token]) -> str:
        unauthenticated = {
            "CAPABILITY": self.cmd_capability,
            "LOGIN": self.cmd_login,
            "LOGOUT": self.cmd_logout,
        }
        authenticated = {
            "NOOP": self.cmd_noop,
            "SELECT": self.cmd_select,
            "EXAMINE": self.cmd_examine,
            "LIST": self.cmd_list,
            "CREATE": self.cmd_create,
            "EXPUNGE": self.cmd_expunge,
            "UID": self.cmd_uid,
            "STATUS": self.cmd_status,
        }
        if name in unauthenticated:
            return unauthenticated[name](args)
        if name not in authenticated:
            raise _Reply("BAD", "unknown command")
        if self.user is None:
            raise _Reply("BAD", f"{name} is not allowed before LOGIN")
        return authenticated[name](args)

    # -- the commands ------------------------------------------------------------------------

    def cmd_capability(self, args: list[Token]) -> str:
        offered = self.fake.capabilities if self.user is not None else self.fake.greeting_capabilities
        self.untagged(f"CAPABILITY {' '.join(offered)}")
        return "Thats all she wrote!"

    def cmd_login(self, args: list[Token]) -> str:
        if self.user is not None:
            raise _Reply("BAD", "already logged in")
        user, password = _strings(args, 2)
        accepted = not self.fake.gmail and (user, password) == (self.fake.username, self.fake.password)
        with self.fake.lock:
            self.fake.logins.append(("LOGIN", user, accepted))
        if self.fake.gmail:  # an account password, as Gmail has refused them since 2022
            raise _Reply("NO", APP_PASSWORD_REQUIRED)
        if not accepted:
            raise _Reply("NO", "[AUTHENTICATIONFAILED] Invalid credentials")
        with self.fake.lock:
            return self.logged_in(user)

    def cmd_authenticate(self, args: list[Token]) -> str:
        """XOAUTH2 or OAUTHBEARER with an access token, the initial response inline (SASL-IR) or
        after an empty challenge; a refused token gets Gmail's error challenge first."""
        if self.user is not None:
            raise _Reply("BAD", "already logged in")
        words = _strings(args, None)
        mechanism = words[0].upper() if words else ""
        if not self.fake.gmail or mechanism not in ("XOAUTH2", "OAUTHBEARER") or len(words) > 2:
            raise _Reply("NO", "[CANNOT] Unsupported authentication mechanism")
        if len(words) == 1:
            self.send("+ ")
        response = (
            words[1] if len(words) == 2 else self.rfile.readline(_MAX_LINE).strip().decode("ascii", "replace")
        )
        if response == "*":
            raise _Reply("BAD", "AUTHENTICATE cancelled")
        user, token = _bearer(mechanism, response)
        accepted = (user, token) == (self.fake.username, self.fake.token)
        with self.fake.lock:
            self.fake.logins.append((mechanism, user, accepted))
        if not accepted:
            self.send(f"+ {TOKEN_ERROR}")
            self.rfile.readline(_MAX_LINE)  # the client's answer to it: anything ends the exchange
            raise _Reply("NO", "[AUTHENTICATIONFAILED] Invalid credentials (Failure)")
        with self.fake.lock:
            return self.logged_in(user)

    def logged_in(self, user: str) -> str:
        """Called holding the fake's lock, so the count of logged-in connections is exact."""
        logged_in = sum(1 for session in self.fake._sessions if session.user is not None)
        limit = self.fake.max_connections
        if limit is not None and logged_in >= limit:
            raise _Reply("NO", TOO_MANY_CONNECTIONS)
        self.user = user
        self.fake.most_logged_in = max(self.fake.most_logged_in, logged_in + 1)
        return f"[CAPABILITY {' '.join(self.fake.capabilities)}] {user} authenticated (Success)"

    def cmd_logout(self, args: list[Token]) -> str:
        self.untagged("BYE LOGOUT Requested")
        return "73 GoodBye"

    def cmd_noop(self, args: list[Token]) -> str:
        self.announce()
        return "Success"

    def cmd_select(self, args: list[Token], readonly: bool = False) -> str:
        (name,) = _strings(args, 1)
        self.mailbox = None
        box = self.fake._mailboxes.get(_canonical(name))
        if box is None:
            raise _Reply("NO", f"[NONEXISTENT] Unknown Mailbox: {name} (Failure)")
        self.mailbox, self.readonly, self.reported = box, readonly, len(box.messages)
        permanent = "" if readonly else f"{SYSTEM_FLAGS} \\*"
        self.untagged(
            f"FLAGS ({SYSTEM_FLAGS})",
            f"OK [PERMANENTFLAGS ({permanent})] Flags permitted.",
            f"OK [UIDVALIDITY {box.uidvalidity}] UIDs valid.",
            f"{len(box.messages)} EXISTS",
            "0 RECENT",
            f"OK [UIDNEXT {box.uidnext}] Predicted next UID.",
        )
        return f"[{'READ-ONLY' if readonly else 'READ-WRITE'}] {name} selected. (Success)"

    def cmd_status(self, args: list[Token]) -> str:
        """MESSAGES, UIDNEXT and UIDVALIDITY, whichever are asked, in that order."""
        name, items = _strings(args[:1], 1)[0], args[1]
        box = self.fake._mailboxes.get(_canonical(name))
        if box is None:
            raise _Reply("NO", f"[NONEXISTENT] Unknown Mailbox: {name} (Failure)")
        asked = {str(item).upper() for item in (items if isinstance(items, list) else [items])}
        known = {"MESSAGES": len(box.messages), "UIDNEXT": box.uidnext, "UIDVALIDITY": box.uidvalidity}
        values = " ".join(f"{key} {value}" for key, value in known.items() if key in asked)
        self.untagged(f"STATUS {_quote(name)} ({values})")
        return "Success"

    def cmd_examine(self, args: list[Token]) -> str:
        return self.cmd_select(args, readonly=True)

    def cmd_list(self, args: list[Token]) -> str:
        reference, pattern = _strings(args, 2)
        if not pattern:
            self.untagged('LIST (\\Noselect) "/" ""')
            return "Success"
        wildcards = {"*": ".*", "%": "[^/]*"}
        regex = "".join(wildcards.get(char) or re.escape(char) for char in reference + pattern)
        for name in sorted(self.fake._mailboxes):
            if re.fullmatch(regex, name) or (name == "INBOX" and re.fullmatch(regex, name, re.IGNORECASE)):
                attributes = "\\All \\HasNoChildren" if name == ALL_MAIL else "\\HasNoChildren"
                self.untagged(f'LIST ({attributes}) "/" {_quote(name)}')
        return "Success"

    def cmd_create(self, args: list[Token]) -> str:
        (name,) = _strings(args, 1)
        name = _canonical(name.rstrip("/"))
        if not name or name in self.fake._mailboxes:
            raise _Reply("NO", "[ALREADYEXISTS] Duplicate folder name (Failure)")
        self.fake._mailboxes[name] = _Mailbox(name)
        return "Success"

    def cmd_expunge(self, args: list[Token]) -> str:
        box = self.writable()
        self.remove(box, [message for message in box.messages if "\\Deleted" in message.flags])
        return "Success"

    def cmd_idle(self, args: list[Token]) -> str:
        if "IDLE" not in self.fake.capabilities:
            raise _Reply("BAD", "unknown command")
        if self.user is None:
            raise _Reply("BAD", "IDLE is not allowed before LOGIN")
        with self.fake.lock:
            box = self.mailbox
            grew = box is not None and len(box.messages) > self.reported
            # Like Dovecot, news already waiting goes out in the same write as the continuation.
            self.send("+ idling" + (f"\r\n* {len(box.messages)} EXISTS" if box is not None and grew else ""))
            if box is not None and grew:
                self.reported = len(box.messages)
            self.idling = True
            self.fake._idle_changed.notify_all()
        try:
            line = self.rfile.readline(_MAX_LINE)
        finally:
            with self.fake.lock:
                self.idling = False
        if not line:
            raise ConnectionAbortedError("connection closed while idling")
        if line.strip().upper() != b"DONE":
            raise _Reply("BAD", "expected DONE")
        return "IDLE terminated (Success)"

    def cmd_uid(self, args: list[Token]) -> str:
        name = args[0].upper() if args and isinstance(args[0], str) else ""
        commands = {
            "SEARCH": self.cmd_uid_search,
            "FETCH": self.cmd_uid_fetch,
            "STORE": self.cmd_uid_store,
            "COPY": self.cmd_uid_copy,
            "MOVE": self.cmd_uid_move,
            "EXPUNGE": self.cmd_uid_expunge,
        }
        needs = {"MOVE": "MOVE", "EXPUNGE": "UIDPLUS"}
        if name not in commands or needs.get(name, "IMAP4rev1") not in self.fake.capabilities:
            raise _Reply("BAD", "unknown command")
        return commands[name](args[1:])

    def cmd_uid_search(self, args: list[Token]) -> str:
        box = self.selected()
        if args and isinstance(args[0], str) and args[0].upper() == "CHARSET":
            args = args[2:]
        matches = self.search_program(args or ["ALL"])
        self.untagged("SEARCH" + "".join(f" {m.uid}" for m in box.messages if matches(m, box)))
        return "SEARCH completed (Success)"

    def cmd_uid_fetch(self, args: list[Token]) -> str:
        box = self.selected()
        if len(args) != 2 or not isinstance(args[0], str):
            raise _Reply("BAD", "expected UID FETCH <set> <items>")
        names = [item.upper() for item in _strings(_as_list(args[1]), None)]
        for name in names:
            if (
                name not in _FETCH_ITEMS
                and not _BODY_ITEM.fullmatch(name)
                and not (name in _GMAIL_ITEMS and self.gmail)
            ):
                raise _Reply("BAD", f"unsupported fetch item {name}")
        reads = [match for name in names if (match := _BODY_ITEM.fullmatch(name)) and not match[1]]
        marks_seen = not self.readonly and ("RFC822" in names or bool(reads))
        for message in _in_set(args[0], box):
            items = [name for name in names if name != "UID"]
            if marks_seen and "\\Seen" not in message.flags:
                message.mail.flags.add("\\Seen")  # a client that marks mail read is told so
                items += [] if "FLAGS" in items else ["FLAGS"]
            parts = [b"UID %d" % message.uid, *(self.fetch_item(message, name) for name in items)]
            self.send(b"* %d FETCH (%s)" % (box.seq(message), b" ".join(parts)))
        return "Success"

    def fetch_item(self, message: _Entry, name: str) -> bytes:
        shown_labels = message.labels - {self.fake.label_of(self.selected().name)}
        values = {
            "FLAGS": lambda: _paren(sorted(message.flags)),
            "RFC822.SIZE": lambda: str(len(message.raw)),
            "INTERNALDATE": lambda: _imap_datetime(message.internal_date),
            "X-GM-THRID": lambda: str(message.thrid),
            "X-GM-MSGID": lambda: str(message.msgid),
            "X-GM-LABELS": lambda: _paren(_quote(label) for label in sorted(shown_labels)),
            "BODYSTRUCTURE": lambda: _Entity.parse(message.raw).structure(),
        }
        if name in values:
            return f"{name} {values[name]()}".encode()
        if name == "RFC822":
            return b"RFC822 {%d}\r\n%s" % (len(message.raw), message.raw)
        match = _BODY_ITEM.fullmatch(name)
        assert match is not None, name
        section, origin, count = match[2], match[3], match[4]
        data = _Entity.parse(message.raw).section(section)
        if origin is not None:
            data = data[int(origin) : int(origin) + int(count)]
        shown = f"BODY[{section}]" + (f"<{origin}>" if origin is not None else "")
        return b"%s {%d}\r\n%s" % (shown.encode(), len(data), data)

    def cmd_uid_store(self, args: list[Token]) -> str:
        box = self.writable()
        if len(args) != 3 or not isinstance(args[0], str) or not isinstance(args[1], str):
            raise _Reply("BAD", "expected UID STORE <set> <item> <values>")
        action = args[1].upper()
        silent = action.endswith(".SILENT")
        sign, item = action[0] if action[0] in "+-" else "", action.removesuffix(".SILENT").lstrip("+-")
        if item != "FLAGS" and not (item == "X-GM-LABELS" and self.gmail):
            raise _Reply("BAD", f"unsupported store item {args[1]}")
        values = set(_strings(_as_list(args[2]), None))
        for message in _in_set(args[0], box):
            held = message.flags if item == "FLAGS" else set(message.labels)
            wanted = held | values if sign == "+" else held - values if sign == "-" else values
            if item == "FLAGS":
                message.deleted = "\\Deleted" in wanted  # this folder's; the rest are the message's
                message.mail.flags = wanted - {"\\Deleted"}
            else:  # a label added shows the message in its folder; one removed takes it out
                for label in wanted - held:
                    self.fake.add_label(message.mail, label)
                for label in held - wanted:
                    self.fake.remove_label(message.mail, label)
            if not silent and message in box.messages:
                shown = self.fetch_item(message, item)
                self.send(b"* %d FETCH (UID %d %s)" % (box.seq(message), message.uid, shown))
        return "Success"

    def cmd_uid_copy(self, args: list[Token]) -> str:
        box = self.selected()
        uid_set, name = _strings(args, 2)
        return self.copy(_in_set(uid_set, box), name) + " (Success)"

    def cmd_uid_move(self, args: list[Token]) -> str:
        box = self.writable()
        uid_set, name = _strings(args, 2)
        moving = _in_set(uid_set, box)
        self.untagged(f"OK {self.copy(moving, name)} Moved")
        if box.name != ALL_MAIL:  # out of All Mail, Gmail only labels
            self.remove(box, moving)
        return "Success"

    def cmd_uid_expunge(self, args: list[Token]) -> str:
        box = self.writable()
        (uid_set,) = _strings(args, 1)
        self.remove(box, [m for m in _in_set(uid_set, box) if "\\Deleted" in m.flags])
        return "Success"

    # -- helpers -------------------------------------------------------------------------------

    @property
    def gmail(self) -> bool:
        """Whether Gmail's extensions are offered (a fake with X-GM-EXT-1 dropped has none)."""
        return "X-GM-EXT-1" in self.fake.capabilities

    def selected(self) -> _Mailbox:
        if self.mailbox is None:
            raise _Reply("BAD", "no mailbox selected")
        return self.mailbox

    def writable(self) -> _Mailbox:
        box = self.selected()
        if self.readonly:
            raise _Reply("NO", "[READ-ONLY] the mailbox was opened with EXAMINE")
        return box

    def copy(self, messages: list[_Entry], name: str) -> str:
        """Show messages in another mailbox too (Gmail: label them; a plain server: copy them);
        return the COPYUID response code (empty if none copied)."""
        target = self.fake._mailboxes.get(_canonical(name))
        if target is None:
            raise _Reply("NO", f"[TRYCREATE] No folder {name} (Failure)")
        copies = [self.fake.file(target, message.mail) for message in messages]
        if not copies:
            return ""
        source = ",".join(str(message.uid) for message in messages)
        return f"[COPYUID {target.uidvalidity} {source} {','.join(str(c.uid) for c in copies)}]"

    def remove(self, box: _Mailbox, doomed: list[_Entry]) -> None:
        """Expunge messages, highest sequence number first so each EXPUNGE number stays right.

        On Gmail that takes the folder's label away (from All Mail: the message goes for good)."""
        label = self.fake.label_of(box.name)
        for message in reversed(doomed):
            self.untagged(f"{box.seq(message)} EXPUNGE")
            if label is not None:
                self.fake.remove_label(message.mail, label)
            elif box.name == ALL_MAIL:
                for other in self.fake._mailboxes.values():
                    other.messages = [entry for entry in other.messages if entry.mail is not message.mail]
            else:
                box.messages.remove(message)
            self.reported -= 1

    def announce(self, *, always: bool = False) -> None:
        """Tell the client how many messages the selected mailbox holds, if that grew."""
        if self.mailbox is not None and (always or len(self.mailbox.messages) > self.reported):
            self.reported = len(self.mailbox.messages)
            self.untagged(f"{self.reported} EXISTS")

    def idling_in(self, mailbox: str) -> bool:
        return self.idling and self.mailbox is not None and self.mailbox.name == _canonical(mailbox)

    def search_program(self, keys: list[Token]) -> Predicate:
        rest = iter(keys)
        tests = [self.search_key(key, rest) for key in rest]
        return lambda message, box: all(test(message, box) for test in tests)

    def search_key(self, key: Token, rest: Iterator[Token]) -> Predicate:
        """One search key (with the arguments it takes from `rest`) as a test of a message."""
        if isinstance(key, list):
            return self.search_program(key)
        name = key.upper()
        if name == "ALL":
            return lambda message, box: True
        if name == "NOT":
            inner = self.search_key(_next(rest), rest)
            return lambda message, box: not inner(message, box)
        if name == "OR":
            left, right = self.search_key(_next(rest), rest), self.search_key(_next(rest), rest)
            return lambda message, box: left(message, box) or right(message, box)
        if name in _FLAG_KEYS:
            flag, wanted = _FLAG_KEYS[name]
            return lambda message, box: (flag in message.flags) == wanted
        if name == "UID":
            ranges = _parse_set(_string(_next(rest)))
            return lambda message, box: _set_holds(ranges, message.uid, box)
        if name in ("SINCE", "BEFORE", "ON"):
            day = _parse_date(_string(_next(rest)))
            compare: dict[str, Callable[[date], bool]] = {
                "SINCE": lambda d: d >= day,
                "BEFORE": lambda d: d < day,
                "ON": lambda d: d == day,
            }
            return lambda message, box: compare[name](message.internal_date.date())
        if name == "X-GM-THRID" and self.gmail:
            thrid = int(_string(_next(rest)))
            return lambda message, box: message.thrid == thrid
        if name == "X-GM-LABELS" and self.gmail:
            label = _string(_next(rest))
            return lambda message, box: label in message.labels
        raise _Reply("BAD", f"[CLIENTBUG] unsupported search key {key}")

    def untagged(self, *lines: str) -> None:
        for line in lines:
            self.send(f"* {line}")

    def send(self, line: str | bytes) -> None:
        data = (line.encode() if isinstance(line, str) else line) + b"\r\n"
        with self._write_lock:
            self.request.sendall(data)
        with self.fake.lock:
            self.fake.sent_bytes += len(data)


def _bearer(mechanism: str, response: str) -> tuple[str, str]:
    """(user, token) of an XOAUTH2 or OAUTHBEARER initial response (base64); BAD if malformed."""
    try:
        text = base64.b64decode(response, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise _Reply("BAD", "Invalid SASL argument") from None
    fields = text.split("\x01")
    if mechanism == "OAUTHBEARER":  # n,a=USER,^Aauth=Bearer T^A^A (RFC 7628)
        gs2, fields = fields[0], fields[1:]
        user = next((part[2:] for part in gs2.split(",") if part.startswith("a=")), "")
    else:  # user=USER^Aauth=Bearer T^A^A
        user = next((part[5:] for part in fields if part.startswith("user=")), "")
    auth = next((part[5:] for part in fields if part.startswith("auth=")), "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not user or not token:
        raise _Reply("BAD", "Invalid SASL argument")
    return user, token


@dataclass(frozen=True)
class _Entity:
    """A message or body part as IMAP addresses it: its header, its body, and its parts if multipart."""

    header: bytes  # up to and with the blank line
    body: bytes
    maintype: str
    subtype: str
    params: list[tuple[str, str]]
    encoding: str
    parts: list[_Entity]

    @classmethod
    def parse(cls, raw: bytes) -> _Entity:
        cut = min((i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0), default=len(raw))
        end = cut + (4 if raw.startswith(b"\r\n\r\n", cut) else 2 if cut < len(raw) else 0)
        header, body = raw[:end], raw[end:]
        info = email.message_from_bytes(header, policy=email.policy.compat32)
        params = [(str(k), str(v)) for k, v in (info.get_params() or [])[1:]]
        parts: list[_Entity] = []
        boundary = info.get_boundary()
        if info.get_content_maintype() == "multipart" and boundary:
            parts = [cls.parse(piece) for piece in _split_parts(body, boundary.encode())]
        encoding = str(info.get("content-transfer-encoding", "7bit")).strip()
        return cls(
            header, body, info.get_content_maintype(), info.get_content_subtype(), params, encoding, parts
        )

    def structure(self) -> str:
        """BODYSTRUCTURE (RFC 3501 7.4.2), without extension data; message/rfc822 as a plain leaf."""
        if self.parts:
            return (
                "(" + "".join(part.structure() for part in self.parts) + f" {_quote(self.subtype.upper())})"
            )
        params = _paren(f"{_quote(k.upper())} {_quote(v)}" for k, v in self.params) if self.params else "NIL"
        fields = [_quote(self.maintype.upper()), _quote(self.subtype.upper()), params, "NIL", "NIL"]
        fields += [_quote(self.encoding.upper()), str(len(self.body))]
        if self.maintype == "text":
            fields.append(str(self.body.count(b"\n")))
        return "(" + " ".join(fields) + ")"

    def section(self, section: str) -> bytes:
        """The bytes of BODY[section]: "", HEADER, TEXT, or a part number such as 2.1."""
        if section in ("", "HEADER", "TEXT"):
            return {"": self.header + self.body, "HEADER": self.header, "TEXT": self.body}[section]
        entity = self
        for number in (int(n) for n in section.split(".")):
            if not entity.parts and number == 1:
                continue  # part 1 of a single-part entity is its body
            if number > len(entity.parts):
                return b""
            entity = entity.parts[number - 1]
        return entity.body


def _split_parts(body: bytes, boundary: bytes) -> list[bytes]:
    """The parts between a multipart body's delimiter lines (the CRLF before each belongs to it)."""
    delimiter = re.compile(rb"(?:\r?\n|^)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|$)")
    parts: list[bytes] = []
    start: int | None = None
    for match in delimiter.finditer(body):
        if start is not None:
            parts.append(body[start : match.start()])
        if match[1]:
            break
        start = match.end()
    return parts


def tokenize(text: str) -> list[Token]:
    """The atoms, quoted strings and parenthesised lists of a command line (no literals)."""
    stack: list[list[Token]] = [[]]
    i = 0
    while i < len(text):
        char = text[i]
        if char == " ":
            i += 1
        elif char == "(":
            stack.append([])
            i += 1
        elif char == ")":
            if len(stack) == 1:
                raise ValueError("unbalanced )")
            inner = stack.pop()
            stack[-1].append(inner)
            i += 1
        elif char == '"':
            value, i = _unquote(text, i + 1)
            stack[-1].append(value)
        elif char == "{":
            raise ValueError("literals are not supported")
        elif match := _ATOM.match(text, i):
            stack[-1].append(match.group())
            i = match.end()
        else:
            raise ValueError(f"cannot parse {text[i:]!r}")
    if len(stack) != 1:
        raise ValueError("unbalanced (")
    return stack[0]


def _unquote(text: str, i: int) -> tuple[str, int]:
    """The quoted string starting after the opening quote at i - 1, and where it ends."""
    out: list[str] = []
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif char == '"':
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    raise ValueError("unterminated quoted string")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _paren(items: Iterable[str]) -> str:
    return "(" + " ".join(items) + ")"


def _as_list(token: Token) -> list[Token]:
    return token if isinstance(token, list) else [token]


def _string(token: Token) -> str:
    if not isinstance(token, str):
        raise _Reply("BAD", "expected an atom or string, not a list")
    return token


def _strings(args: list[Token], count: int | None) -> list[str]:
    """The arguments as strings, `count` of them unless None."""
    if count is not None and len(args) != count:
        raise _Reply("BAD", f"expected {count} arguments, got {len(args)}")
    return [_string(arg) for arg in args]


def _next(rest: Iterator[Token]) -> Token:
    try:
        return next(rest)
    except StopIteration:
        raise _Reply("BAD", "[CLIENTBUG] search key without its argument") from None


def _canonical(name: str) -> str:
    return "INBOX" if name.upper() == "INBOX" else name


def _parse_set(text: str) -> list[tuple[int | None, int | None]]:
    """An IMAP set such as `1:3,7,9:*` as (low, high) pairs, None standing for `*`."""
    ranges = []
    for part in text.split(","):
        match = re.fullmatch(r"(\*|[1-9]\d*)(?::(\*|[1-9]\d*))?", part)
        if not match:
            raise _Reply("BAD", f"invalid sequence set {text}")
        low, high = match[1], match[2] or match[1]
        ranges.append((None if low == "*" else int(low), None if high == "*" else int(high)))
    return ranges


def _set_holds(ranges: list[tuple[int | None, int | None]], uid: int, box: _Mailbox) -> bool:
    highest = box.messages[-1].uid if box.messages else 0
    for low, high in ranges:
        first, last = sorted((highest if low is None else low, highest if high is None else high))
        if first <= uid <= last:
            return True
    return False


def _in_set(text: str, box: _Mailbox) -> list[_Entry]:
    """The messages whose UIDs are in a UID set, in mailbox order."""
    ranges = _parse_set(text)
    return [message for message in box.messages if _set_holds(ranges, message.uid, box)]


def _parse_date(text: str) -> date:
    match = re.fullmatch(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})", text)
    months = [month.upper() for month in _MONTHS]
    if not match or match[2].upper() not in months:
        raise _Reply("BAD", f"[CLIENTBUG] invalid date {text}")
    return date(int(match[3]), months.index(match[2].upper()) + 1, int(match[1]))


def _imap_datetime(moment: datetime) -> str:
    return f'"{moment.day:2d}-{_MONTHS[moment.month - 1]}-{moment:%Y %H:%M:%S %z}"'
