"""A fake Gmail IMAP server on loopback, for tests of Gmail-only behaviour.

Dovecot cannot offer Gmail's X-GM-EXT-1, so this small but real IMAP4rev1 peer (a socket, a
thread per connection) speaks the part of IMAP that triage's client uses, the way Gmail does:
X-GM-THRID, X-GM-MSGID and X-GM-LABELS, plus IDLE, MOVE and UIDPLUS. ``gmail=False`` drops
X-GM-EXT-1 so the same peer plays a plain server; ``without`` drops other capabilities (MOVE,
UIDPLUS, IDLE). Mail is held in memory: tests add messages, inspect what a client did (flags,
labels, where a message went, ``commands``) and wake idling clients with ``notify_new``.

Not implemented: TLS and STARTTLS, AUTHENTICATE (XOAUTH2), APPEND and literals in commands,
sequence-number (non-UID) FETCH/STORE/SEARCH/COPY/MOVE, BODYSTRUCTURE, ENVELOPE, section and
partial fetches (BODY[HEADER], <0.n>), search keys other than ALL, NOT, OR, UID, SINCE, BEFORE,
ON, SEEN, UNSEEN, DELETED, UNDELETED, FLAGGED, X-GM-THRID and X-GM-LABELS (no X-GM-RAW), STATUS,
CLOSE, UNSELECT, DELETE, RENAME, LSUB, \\Recent, modified UTF-7 (mailbox names are kept as sent),
Gmail's folders-are-labels model ([Gmail]/All Mail, a COPY adding a label), and telling one
connection about another's expunges (only new mail is announced: by NOOP, IDLE and notify_new).
"""

from __future__ import annotations

import contextlib
import dataclasses
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
SYSTEM_FLAGS = "\\Answered \\Flagged \\Draft \\Deleted \\Seen"
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
_FETCH_ITEMS = {"UID", "FLAGS", "RFC822.SIZE", "INTERNALDATE", "BODY[]", "BODY.PEEK[]", "RFC822"}
_GMAIL_ITEMS = {"X-GM-THRID", "X-GM-MSGID", "X-GM-LABELS"}

Token: TypeAlias = "str | list[Token]"
Predicate: TypeAlias = Callable[["StoredMessage", "_Mailbox"], bool]


@dataclass(eq=False)
class StoredMessage:
    """One message as the server holds it (labels and flags as sent, e.g. "\\Important")."""

    uid: int
    raw: bytes
    thrid: int
    msgid: int
    internal_date: datetime
    labels: set[str] = field(default_factory=set)
    flags: set[str] = field(default_factory=set)

    def snapshot(self) -> StoredMessage:
        return dataclasses.replace(self, labels=set(self.labels), flags=set(self.flags))


@dataclass(eq=False)
class _Mailbox:
    name: str
    uidvalidity: int = 1
    uidnext: int = 1
    messages: list[StoredMessage] = field(default_factory=list)

    def append(self, message: StoredMessage) -> StoredMessage:
        message.uid, self.uidnext = self.uidnext, self.uidnext + 1
        self.messages.append(message)
        return message

    def seq(self, message: StoredMessage) -> int:
        return self.messages.index(message) + 1


class _Reply(Exception):
    """Ends a command with a tagged NO or BAD."""

    def __init__(self, status: str, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


class FakeGmail:
    """An in-memory Gmail-like IMAP server on 127.0.0.1, running while used as a context manager."""

    def __init__(
        self,
        username: str = "me@example.com",
        password: str = "pw",
        *,
        gmail: bool = True,
        without: Iterable[str] = (),
    ) -> None:
        dropped = {name.upper() for name in without} | (set() if gmail else {"X-GM-EXT-1"})
        self.capabilities = tuple(name for name in CAPABILITIES if name.upper() not in dropped)
        self.username, self.password = username, password
        self.host, self.port = "127.0.0.1", 0
        self.commands: list[str] = []  # command lines received, tags stripped, passwords masked
        self.lock = threading.RLock()
        self._idle_changed = threading.Condition(self.lock)
        self._mailboxes = {"INBOX": _Mailbox("INBOX")}
        self._sessions: set[_Session] = set()
        self._next_msgid = 1
        self._refusals: dict[str, int] = {}  # command prefix -> how many more to refuse
        self._tcp: _Server | None = None
        self._thread: threading.Thread | None = None

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
        """Append a message (creating the mailbox if needed); return its UID."""
        moment = internal_date or datetime.now(UTC).replace(microsecond=0)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        with self.lock:
            name = _canonical(mailbox)
            box = self._mailboxes.setdefault(name, _Mailbox(name))
            message = StoredMessage(0, bytes(raw), thrid, self._new_msgid(), moment, set(labels), set(flags))
            return box.append(message).uid

    def message(self, mailbox: str, uid: int) -> StoredMessage:
        """A snapshot of one message; KeyError when the mailbox does not hold that UID."""
        with self.lock:
            box = self._mailboxes.get(_canonical(mailbox))
            for message in box.messages if box else ():
                if message.uid == uid:
                    return message.snapshot()
        raise KeyError(f"{mailbox} has no UID {uid}")

    def uids(self, mailbox: str) -> list[int]:
        """The UIDs a mailbox holds, ascending (empty when it does not exist)."""
        with self.lock:
            box = self._mailboxes.get(_canonical(mailbox))
            return [message.uid for message in box.messages] if box else []

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
            self.send(f"* OK [CAPABILITY {' '.join(self.fake.capabilities)}] Gimap ready")
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
        shown = " ".join([*rest.split(" ")[:2], "***"]) if name == "LOGIN" else rest  # never the password
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
        self.untagged(f"CAPABILITY {' '.join(self.fake.capabilities)}")
        return "Thats all she wrote!"

    def cmd_login(self, args: list[Token]) -> str:
        if self.user is not None:
            raise _Reply("BAD", "already logged in")
        user, password = _strings(args, 2)
        if (user, password) != (self.fake.username, self.fake.password):
            raise _Reply("NO", "[AUTHENTICATIONFAILED] Invalid credentials")
        self.user = user
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
                self.untagged(f'LIST (\\HasNoChildren) "/" {_quote(name)}')
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
            if name not in _FETCH_ITEMS and not (name in _GMAIL_ITEMS and self.gmail):
                raise _Reply("BAD", f"unsupported fetch item {name}")
        marks_seen = not self.readonly and ("BODY[]" in names or "RFC822" in names)
        for message in _in_set(args[0], box):
            items = [name for name in names if name != "UID"]
            if marks_seen and "\\Seen" not in message.flags:
                message.flags.add("\\Seen")  # a client that marks mail read is told so
                items += [] if "FLAGS" in items else ["FLAGS"]
            parts = [b"UID %d" % message.uid, *(self.fetch_item(message, name) for name in items)]
            self.send(b"* %d FETCH (%s)" % (box.seq(message), b" ".join(parts)))
        return "Success"

    def fetch_item(self, message: StoredMessage, name: str) -> bytes:
        values = {
            "FLAGS": lambda: _paren(sorted(message.flags)),
            "RFC822.SIZE": lambda: str(len(message.raw)),
            "INTERNALDATE": lambda: _imap_datetime(message.internal_date),
            "X-GM-THRID": lambda: str(message.thrid),
            "X-GM-MSGID": lambda: str(message.msgid),
            "X-GM-LABELS": lambda: _paren(_quote(label) for label in sorted(message.labels)),
        }
        if name in values:
            return f"{name} {values[name]()}".encode()
        shown = b"RFC822" if name == "RFC822" else b"BODY[]"
        return b"%s {%d}\r\n%s" % (shown, len(message.raw), message.raw)

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
            held = message.flags if item == "FLAGS" else message.labels
            if sign == "+":
                held |= values
            elif sign == "-":
                held -= values
            else:
                held.clear()
                held |= values
            if not silent:
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

    def copy(self, messages: list[StoredMessage], name: str) -> str:
        """Copy messages to a mailbox; return the COPYUID response code (empty if none copied)."""
        target = self.fake._mailboxes.get(_canonical(name))
        if target is None:
            raise _Reply("NO", f"[TRYCREATE] No folder {name} (Failure)")
        copies = [target.append(message.snapshot()) for message in messages]
        if not copies:
            return ""
        source = ",".join(str(message.uid) for message in messages)
        return f"[COPYUID {target.uidvalidity} {source} {','.join(str(c.uid) for c in copies)}]"

    def remove(self, box: _Mailbox, doomed: list[StoredMessage]) -> None:
        """Expunge messages, highest sequence number first so each EXPUNGE number stays right."""
        for message in reversed(doomed):
            self.untagged(f"{box.seq(message)} EXPUNGE")
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
        data = line.encode() if isinstance(line, str) else line
        with self._write_lock:
            self.request.sendall(data + b"\r\n")


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


def _in_set(text: str, box: _Mailbox) -> list[StoredMessage]:
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
