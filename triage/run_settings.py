"""What a run client uses of `[langgraph]`, as plain values, checked before any request: the API key
never crosses the network in clear, HTTP/2 is asked for only where it can be spoken, and a CA file
that cannot be read is a configuration error."""

from __future__ import annotations

import importlib.util
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import httpx

from triage.errors import ConfigError
from triage.hosts import is_loopback_host

if TYPE_CHECKING:  # at run time this module never loads the settings (see RunsSettings)
    from triage.config import LangGraphSettings


@dataclass(frozen=True, slots=True)
class RunsSettings:
    """What a RunsClient uses of `[langgraph]`, as plain values.

    A run worker (triage.runs_worker) receives these without loading pydantic and the settings
    module, which would be half of its memory.
    """

    url: str
    api_key: str | None = field(repr=False)
    timeout_s: float
    max_concurrency: int
    max_attempts: int
    backoff_cap_s: float
    mode: Literal["wait", "background"] = "wait"
    on_completion: Literal["delete", "keep"] = "delete"
    min_concurrency: int = 1
    rate_limit_retries: int = 10
    ca_file: str | None = None
    http2: bool = False

    @classmethod
    def of(cls, settings: LangGraphSettings, *, max_concurrency: int | None = None) -> RunsSettings:
        """Checked first: the API key is never sent in clear to a host that is not this one, and
        HTTP/2 is asked for only where it can be spoken."""
        check_transport(settings)
        if settings.http2 and importlib.util.find_spec("h2") is None:
            raise ConfigError("langgraph.http2 needs the h2 package: pip install 'triage[http2]'")
        return cls(
            url=settings.url.rstrip("/"),
            api_key=settings.api_key.get_secret_value() if settings.api_key is not None else None,
            timeout_s=settings.timeout_s,
            max_concurrency=max_concurrency or settings.max_concurrency,
            max_attempts=settings.max_attempts,
            backoff_cap_s=settings.backoff_cap_s,
            mode=settings.mode,
            on_completion=settings.on_completion,
            min_concurrency=settings.min_concurrency,
            rate_limit_retries=settings.rate_limit_retries,
            ca_file=str(settings.ca_file) if settings.ca_file is not None else None,
            http2=settings.http2,
        )


def tls_context(ca_file: str | None) -> ssl.SSLContext | bool:
    """The CA bundle of `langgraph.ca_file`; else httpx's own (certifi, or `SSL_CERT_FILE`)."""
    if ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"langgraph.ca_file {ca_file}: {exc}") from None


def check_transport(settings: LangGraphSettings) -> None:
    """Refuse, before any request, to send the API key in clear to a host that is not this one."""
    url = httpx.URL(settings.url)
    if (
        settings.api_key is not None
        and url.scheme == "http"
        and not is_loopback_host(url.host)
        and not settings.allow_insecure
    ):
        raise ConfigError(
            f"langgraph.url {settings.url} is plain http: the API key would cross the network in clear"
            " (use https, or set langgraph.allow_insecure = true)"
        )
