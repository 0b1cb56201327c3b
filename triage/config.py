"""Settings: a TOML file overridden by `TRIAGE_<SECTION>__<KEY>` environment variables."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from triage.errors import ConfigError
from triage.rules import Rule

DEFAULT_CONFIG_FILE = Path("triage.toml")
MASK = "********"


class Section(BaseModel):
    """A config section: unknown keys are typos and are refused."""

    model_config = ConfigDict(extra="forbid")


class ImapSettings(Section):
    host: str = ""
    port: int | None = Field(default=None, ge=1, le=65535)
    tls: Literal["implicit", "starttls", "none"] = "implicit"
    ca_file: Path | None = None
    username: str = ""
    password: SecretStr | None = None
    password_command: str | None = None
    oauth2_token_command: str | None = None
    account: str | None = None
    mailboxes: list[str] = Field(default_factory=lambda: ["INBOX"], min_length=1)
    fetch_batch: int = Field(default=100, ge=1, le=5000)
    timeout_s: float = Field(default=30.0, gt=0)
    max_message_bytes: int = Field(default=10 * 1024 * 1024, ge=64 * 1024)
    # The most connections `triage watch` opens to this account, whatever the number of mailboxes:
    # servers cap them per user (Dovecot 10 per user and IP, Gmail 15), and the user's own clients
    # need some too.
    max_connections: int = Field(default=3, ge=1, le=100)
    allow_insecure: bool = False

    @model_validator(mode="after")
    def _one_credential(self) -> ImapSettings:
        given = [
            name
            for name in ("password", "password_command", "oauth2_token_command")
            if getattr(self, name) is not None
        ]
        if len(given) > 1:
            raise ValueError(f"give only one of {', '.join(given)}")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.tls == "implicit" else 143)

    @property
    def account_name(self) -> str:
        """The account part of a message's identity; stable across config edits."""
        return self.account or f"{self.username}@{self.host}"


class LangGraphSettings(Section):
    url: str = "http://127.0.0.1:2024"
    assistant_id: str = "agent"
    api_key: SecretStr | None = None
    timeout_s: float = Field(default=120.0, gt=0)
    max_concurrency: int = Field(default=8, ge=1, le=1024)  # a ceiling: see triage.adaptive_limit
    min_concurrency: int = Field(default=1, ge=1, le=1024)
    mode: Literal["wait", "background"] = "wait"
    max_attempts: int = Field(default=4, ge=1, le=20)
    rate_limit_retries: int = Field(default=10, ge=0, le=1000)
    backoff_cap_s: float = Field(default=30.0, ge=0)
    circuit_breaker: int = Field(default=5, ge=0)
    metadata: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    webhook: str | None = None
    on_completion: Literal["delete", "keep"] = "delete"
    allow_insecure: bool = False
    ca_file: Path | None = None  # a private CA's bundle; else $SSL_CERT_FILE, else certifi's
    http2: bool = False  # offered over https (ALPN); needs the `http2` extra

    @field_validator("metadata", "config")
    @classmethod
    def _json(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Sent as JSON with every run: TOML's dates, times, NaN and infinity have no JSON form."""
        try:
            json.dumps(value, allow_nan=False)
        except ValueError:
            raise ValueError("NaN and infinity cannot be sent as JSON") from None
        except TypeError as exc:
            raise ValueError(f"cannot be sent as JSON: {exc}") from None
        return value

    @model_validator(mode="after")
    def _http_url(self) -> LangGraphSettings:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https:// (got {self.url!r})")
        return self


class PromptSettings(Section):
    template: Path | None = None
    max_body_chars: int = Field(default=4000, ge=200)
    max_examples: int = Field(default=4, ge=0, le=50)  # labelled past decisions offered; 0: none
    strip_quoted: bool = True  # the body is the new text; quoted history and signature apart


class LearningSettings(Section):
    # What a message the user moves back out of an action's folder is corrected to.
    moved_back_decision: Literal["new-task", "ignore"] = "new-task"


class CostSettings(Section):
    """Model prices, for `triage stats` and `backfill --estimate` to put a figure on tokens."""

    input_per_million: float | None = Field(default=None, ge=0)
    output_per_million: float | None = Field(default=None, ge=0)
    currency: str = "USD"


class StoreSettings(Section):
    url: str = "sqlite:///triage.db"
    keep_bodies_days: int | None = Field(default=None, ge=1)


class WatchSettings(Section):
    mode: Literal["auto", "idle", "poll"] = "auto"
    idle_renew_s: float = Field(default=600.0, gt=0, le=29 * 60)
    poll_interval_s: float = Field(default=60.0, gt=0)
    reconnect_backoff_cap_s: float = Field(default=300.0, gt=0)
    retry_backoff_cap_s: float = Field(default=600.0, gt=0)
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    heartbeat_s: float = Field(default=5.0, gt=0)
    lease_s: float = Field(default=30.0, gt=0)
    # Daemons with this config on one store divide the mailboxes between them (each its fair
    # share; a dead one's taken over once its leases age past lease_s). Off: a second daemon on a
    # watched mailbox refuses to start.
    divide: bool = False
    # Prometheus metrics (the `metrics` extra); unset: none served. 0: any free port (logged).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"  # loopback: metrics name accounts and mailboxes


class ActionSettings(Section):
    """What to do in the mailbox with a message once its decision is recorded."""

    move_to: str | None = None
    add_flags: list[str] = Field(default_factory=list)
    mark_seen: bool = False
    gmail_labels: list[str] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.move_to or self.add_flags or self.mark_seen or self.gmail_labels)

    def describe(self) -> list[str]:
        """The actions in words, in the order they are carried out (for dry runs)."""
        steps = [f"flag {' '.join(self.add_flags)}"] if self.add_flags else []
        steps += ["mark seen"] if self.mark_seen else []
        steps += [f"label {' '.join(self.gmail_labels)} (Gmail)"] if self.gmail_labels else []
        return steps + ([f"move to {self.move_to}"] if self.move_to else [])


class RoutingSettings(Section):
    execute: bool = False
    task_assistant_id: str = "agent"
    multitask_strategy: Literal["reject", "interrupt", "rollback", "enqueue"] = "enqueue"
    max_candidates: int = Field(default=10, ge=0, le=100)
    header_match: Literal["hint", "decide"] = "hint"
    rules: list[Rule] = Field(default_factory=list)
    actions: dict[Literal["new-task", "existing-thread", "ignore", "needs-review"], ActionSettings] = Field(
        default_factory=dict
    )


class WebSettings(Section):
    """`triage web`: where it listens, and the token a request needs off this machine."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)  # 0: any free port
    token: SecretStr | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRIAGE_",
        env_nested_delimiter="__",
        extra="forbid",
        nested_model_default_partial_update=True,
    )

    imap: ImapSettings = Field(default_factory=ImapSettings)
    accounts: dict[str, ImapSettings] = Field(default_factory=dict)
    langgraph: LangGraphSettings = Field(default_factory=LangGraphSettings)
    prompt: PromptSettings = Field(default_factory=PromptSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    learning: LearningSettings = Field(default_factory=LearningSettings)
    cost: CostSettings = Field(default_factory=CostSettings)
    web: WebSettings = Field(default_factory=WebSettings)

    @property
    def has_mailbox_actions(self) -> bool:
        """Whether any decision moves or flags mail (then mailboxes are opened read-write)."""
        return any(not actions.empty for actions in self.routing.actions.values())

    def mail_accounts(self, name: str | None = None) -> list[ImapSettings]:
        """The IMAP accounts to read: `[imap]` (when it names a host) and each `[accounts.NAME]`.

        An `[accounts.NAME]` section is named NAME in the log unless it sets `account` itself.
        `name` picks one of them by that name.
        """
        named = [a.model_copy(update={"account": a.account or key}) for key, a in self.accounts.items()]
        found = ([self.imap] if self.imap.host or not named else []) + named
        if name is None:
            return found
        chosen = [a for a in found if a.account_name == name]
        if not chosen:
            known = ", ".join(a.account_name for a in found)
            raise ConfigError(f"no account named {name!r} (configured: {known})")
        return chosen

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init arguments; the environment wins over them.
        return (env_settings, init_settings)


def config_path(explicit: Path | None) -> Path | None:
    """`--config`, else `$TRIAGE_CONFIG`, else `./triage.toml` if it exists."""
    if explicit is not None:
        return explicit
    if env := os.environ.get("TRIAGE_CONFIG"):
        return Path(env)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None


def load_settings(explicit: Path | None = None) -> Settings:
    """Read and validate the configuration, or raise ConfigError naming the bad key."""
    path = config_path(explicit)
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, path)) from None


def describe_validation_error(exc: ValidationError, path: Path | None) -> str:
    """One line: the first bad key, what is wrong with it (never echoing secret values)."""
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    where = f" in {path}" if path else ""
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"invalid config{where}: {key}: {first['msg']}{more}"


def masked(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, with every secret replaced by a mask."""
    data = settings.model_dump(mode="json")
    for section, key in (("imap", "password"), ("langgraph", "api_key"), ("web", "token")):
        if data[section][key] is not None:
            data[section][key] = MASK
    from triage.store.engine import safe_url  # SQLAlchemy: loaded only when a config is shown

    data["store"]["url"] = safe_url(data["store"]["url"])  # a database password in the URL
    return data
