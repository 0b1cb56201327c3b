"""The application: its routes over one store, signing in, the health check and the error pages."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from triage.errors import TriageError
from triage.store.decisions import Store
from triage.store.engine import one_line
from triage.web.log_pages import correction_post, decision_page, log_page, prompt_text
from triage.web.pages import HERE, render, store_of
from triage.web.review import review_page
from triage.web.security import Guard, Signer, local_path, new_session, session_cookie, tokens_match
from triage.web.stats_page import stats_page
from triage.web.threads_page import thread_page, threads_page


def create_app(store: Store, *, token: str | None = None, read_only: bool = False) -> Starlette:
    """The pages over `store`. With `token`, every request must carry it; without one, the pages
    answer only requests addressed to this machine (so serve them on a loopback address)."""
    signer = Signer()
    routes = [
        Route("/", log_page),
        Route("/decisions/{ref}", decision_page),
        Route("/decisions/{ref}/prompt", prompt_text),
        Route("/decisions/{ref}/corrections", correction_post, methods=["POST"]),
        Route("/review", review_page),
        Route("/stats", stats_page),
        Route("/threads", threads_page),
        Route("/threads/{thread_id}", thread_page),
        Route("/healthz", healthz),
        Route("/favicon.ico", favicon),
        Route("/login", login_page, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, signer=signer, token=token, read_only=read_only)],
        exception_handlers={
            HTTPException: _http_error,
            TriageError: _triage_error,
            OperationalError: _store_error,
        },
    )
    app.state.store, app.state.signer, app.state.token = store, signer, token
    app.state.read_only, app.state.token_required = read_only, token is not None
    return app


def healthz(request: Request) -> Response:
    """200 when the store answers a query, 503 when it does not."""
    try:
        with store_of(request).engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError:
        return PlainTextResponse("the store does not answer", 503)
    return PlainTextResponse("ok")


def favicon(request: Request) -> Response:
    """Where browsers look for it whatever the page says."""
    return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")


async def login_page(request: Request) -> Response:
    """The form that trades the token for a signed-in session (a fresh one, with its own CSRF token)."""
    state = request.app.state
    if state.token is None:
        return RedirectResponse("/", 303)
    if request.method == "GET":
        wanted = local_path(request.query_params.get("next"))
        return render(request, "login.html", next=wanted, error=None)
    form: dict[str, str] = request.state.form
    wanted = local_path(form.get("next"))
    if not tokens_match(form.get("token", ""), state.token):
        return render(request, "login.html", status=401, next=wanted, error="That is not the token.")
    response = RedirectResponse(wanted, 303)
    signed_in = new_session(state.signer, signed_in=True)
    response.headers.append("set-cookie", session_cookie(state.signer, signed_in, secure=_secure(request)))
    return response


async def logout(request: Request) -> Response:
    state = request.app.state
    response = RedirectResponse("/login" if state.token else "/", 303)
    signed_out = new_session(state.signer, signed_in=False)
    response.headers.append("set-cookie", session_cookie(state.signer, signed_out, secure=_secure(request)))
    return response


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    response = render(request, "error.html", status=exc.status_code, message=exc.detail)
    response.headers.update(exc.headers or {})
    return response


async def _triage_error(request: Request, exc: Exception) -> Response:
    return render(request, "error.html", status=400, message=str(exc))


async def _store_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OperationalError)
    return render(request, "error.html", status=503, message=f"the store does not answer: {one_line(exc)}")
