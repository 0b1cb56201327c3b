"""The guard in front of every page: who may ask, what a POST must carry, what a browser may load.

One ASGI middleware, so no route can forget any of it:

- a session cookie (signed, HttpOnly, SameSite=Strict) for every visitor, to tie CSRF tokens to;
- with a token configured, every request carries it: the login form's cookie, or
  `Authorization: Bearer TOKEN`; without one (loopback only), the Host header must name this
  machine, so a web page elsewhere cannot reach the log through DNS rebinding;
- every POST carries the session's CSRF token in its form, else 403 and nothing is done; the
  form, read here, is handed to the page as `request.state.form`;
- read-only: every POST but logging in and out (which change nothing in the log) gets 405;
- headers on every response: a strict Content-Security-Policy (only this server's own files, no
  inline script), nosniff, no referrer, no framing, no caching of other people's mail.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from triage.hosts import is_loopback_host

SESSION_COOKIE = "triage_session"
CSRF_FIELD = "csrf_token"
MAX_FORM_BYTES = 64 * 1024  # a correction's note, not an upload
# Reachable without the token: the login form and what it is drawn with, and the health check.
PUBLIC_PATHS = ("/login", "/healthz", "/favicon.ico")
PUBLIC_PREFIXES = ("/static/",)
# Posts that change nothing in the log, so a read-only server still takes them.
SESSION_ONLY_POSTS = ("/login", "/logout")
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = tuple(
    (name.encode(), value.encode())
    for name, value in (
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        ("cache-control", "no-store"),
    )
)


@dataclass(frozen=True, slots=True)
class Session:
    """A visitor's session: its id (what CSRF tokens are tied to) and whether it gave the token."""

    id: str
    signed_in: bool
    csrf_token: str


class Signer:
    """HMACs under a key made at start-up: a restart signs every visitor out."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def sign(self, purpose: str, value: str) -> str:
        return hmac.new(self._key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def session(self, session_id: str, signed_in: bool) -> Session:
        return Session(session_id, signed_in, self.sign("csrf", session_id))

    def cookie_value(self, session: Session) -> str:
        body = f"{session.id}.{int(session.signed_in)}"
        return f"{body}.{self.sign('session', body)}"

    def from_cookie(self, value: str | None) -> Session | None:
        """The session a cookie names, or None when it is missing, malformed or not signed by us."""
        session_id, _, rest = (value or "").partition(".")
        flag, _, signature = rest.partition(".")
        if not session_id or flag not in ("0", "1"):
            return None
        if not hmac.compare_digest(signature, self.sign("session", f"{session_id}.{flag}")):
            return None
        return self.session(session_id, flag == "1")


def new_session(signer: Signer, *, signed_in: bool) -> Session:
    """A fresh session id: on a first visit, and at every sign-in (so a planted id is worthless)."""
    return signer.session(secrets.token_urlsafe(18), signed_in)


def tokens_match(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def local_path(target: str | None) -> str:
    """Where to send a visitor after a form: a path on this server, never another site."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    # Browsers read a backslash as a slash and drop tabs and newlines: "/\t/evil" is "//evil".
    if any(c.isspace() or not c.isprintable() or c == "\\" for c in target):
        return "/"
    parts = urlsplit(target)
    return "/" if parts.scheme or parts.netloc else target


def host_name(header: str) -> str:
    """The name in a Host header, without its port: `[::1]:8080` is `::1`."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def session_cookie(signer: Signer, session: Session, *, secure: bool) -> str:
    cookie = f"{SESSION_COOKIE}={signer.cookie_value(session)}; Path=/; HttpOnly; SameSite=Strict"
    return cookie + ("; Secure" if secure else "")


class Guard:
    """The middleware: see the module's docstring."""

    def __init__(self, app: ASGIApp, *, signer: Signer, token: str | None, read_only: bool) -> None:
        self.app, self.signer, self.token, self.read_only = app, signer, token, read_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        found = self.signer.from_cookie(cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE))
        session = found or new_session(self.signer, signed_in=False)
        secure = scope.get("scheme") == "https"
        cookie = session_cookie(self.signer, session, secure=secure).encode()
        extra = [] if found else [(b"set-cookie", cookie)]

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                added = [(n, v) for n, v in SECURITY_HEADERS if n not in names]
                message = {**message, "headers": [*message.get("headers", []), *added, *extra]}
            await send(message)

        refusal = self._refusal(scope, headers, session)
        if refusal is not None:
            await refusal(scope, receive, send_guarded)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        state["session"] = session
        if scope["method"] == "POST":
            form, body = await _read_form(receive)
            if form is None:
                await PlainTextResponse("a form of at most 64 KB", 413)(scope, receive, send_guarded)
                return
            if not tokens_match(form.get(CSRF_FIELD), session.csrf_token):
                message = "missing or stale form token: reload the page and try again"
                await PlainTextResponse(message, 403)(scope, receive, send_guarded)
                return
            state["form"] = form
            receive = _replay(body)
        await self.app(scope, receive, send_guarded)

    def _refusal(self, scope: Scope, headers: Headers, session: Session) -> Response | None:
        """The response that turns the request away, or None to let it through."""
        path: str = scope["path"]
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        if self.token is None:
            if not is_loopback_host(host_name(headers.get("host", ""))):
                message = "this server answers only to this machine's own name: set web.token to serve others"
                return PlainTextResponse(message, 421)
        elif not (public or session.signed_in or self._bearer_matches(headers)):
            if scope["method"] in ("GET", "HEAD") and not headers.get("authorization"):
                query = scope.get("query_string", b"").decode("latin-1")
                wanted = path + (f"?{query}" if query else "")
                return RedirectResponse(f"/login?next={quote(wanted, safe='')}", 303)
            return PlainTextResponse("the web token is needed", 401, {"www-authenticate": "Bearer"})
        if self.read_only and scope["method"] not in ("GET", "HEAD") and path not in SESSION_ONLY_POSTS:
            return PlainTextResponse("this server is read-only", 405, {"allow": "GET, HEAD"})
        return None

    def _bearer_matches(self, headers: Headers) -> bool:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if self.token is None or scheme.lower() != "bearer":
            return False
        return tokens_match(given.strip(), self.token)


async def _read_form(receive: Receive) -> tuple[dict[str, str] | None, bytes]:
    """A URL-encoded form (the only kind these pages send), or None when it is too long."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_FORM_BYTES:
            return None, b""
        if not message.get("more_body", False):
            break
    fields = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return dict(fields), body


def _replay(body: bytes) -> Receive:
    """The request's body again, for the page behind the guard."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
