"""`triage replay`: stored messages run again with a template or assistant, and compared with the
recorded decisions and their corrections.

Each message is re-rendered with the threads and examples it was offered, so the only thing that
changes is what the user changed. Over labelled decisions (`--corrected`) the examples are chosen as
they would be now instead, leaving out the message's own label and decisions made after it: the
report's lift table then says what learning from the labels changes (`--no-examples`: the baseline).
Nothing is written unless asked to (`record`); then only the decision is rewritten.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.config import LangGraphSettings, Settings, describe_validation_error
from triage.errors import ConfigError, TriageError
from triage.examples import Example
from triage.log.labels import LABELS, label
from triage.log.query import LATEST_CORRECTION, STREAM, Filters, filtered, latest_correction_id
from triage.message import Email
from triage.pipeline import Pipeline, Prepared, decide_without_run
from triage.prompt import PromptRenderer
from triage.run_settings import RunsSettings
from triage.runs import RunsClient
from triage.sources import RawMessage
from triage.store.decisions import Outcome, Store
from triage.store.messages import stored_email
from triage.store.models import DecisionRecord, StoredMessage
from triage.store.tables import as_utc
from triage.threads import ThreadCandidate


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a decision says, in the terms replay compares: a label, and the thread it names."""

    label: str
    thread_id: str | None = None

    @classmethod
    def of(cls, status: str, decision: str | None, thread_id: str | None) -> Verdict:
        name = label(status, decision)
        return cls(name, thread_id if name == "existing-thread" else None)

    def __str__(self) -> str:
        return f"{self.label}:{self.thread_id}" if self.thread_id else self.label


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    template: Path | None = None
    assistant_id: str | None = None
    url: str | None = None
    record: bool = False
    concurrency: int = 8
    limit: int | None = None
    examples: Literal["recorded", "now", "none"] = "recorded"


@dataclass(frozen=True, slots=True)
class Replayed:
    """One decision run again: what was recorded, the latest correction, and the new answer."""

    id: int
    mailbox: str
    uid: int
    subject: str
    recorded: Verdict
    corrected: Verdict | None
    replayed: Verdict
    reason: str | None
    same_prompt: bool | None  # None when the recorded prompt is gone or came from another template
    recorded_template: str | None = None

    @property
    def changed(self) -> bool:
        return self.replayed != self.recorded


@dataclass(slots=True)
class ReplayReport:
    template_hash: str
    template_path: str
    assistant_id: str
    url: str
    replayed: int = 0
    recorded_back: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    against_recorded: Counter[tuple[str, str]] = field(default_factory=Counter)
    against_corrections: Counter[tuple[str, str]] = field(default_factory=Counter)
    agree_recorded: int = 0
    agree_corrections: int = 0
    corrected: int = 0
    prompts_compared: int = 0
    prompts_identical: int = 0
    changed: list[Replayed] = field(default_factory=list)
    # Per template of the recorded decisions: labelled, recorded agreeing, replayed agreeing.
    lift: dict[str, list[int]] = field(default_factory=dict)

    def add(self, item: Replayed) -> None:
        self.replayed += 1
        self.against_recorded[item.recorded.label, item.replayed.label] += 1
        self.agree_recorded += not item.changed
        if item.corrected is not None:
            self.corrected += 1
            self.against_corrections[item.corrected.label, item.replayed.label] += 1
            self.agree_corrections += item.corrected == item.replayed
            row = self.lift.setdefault(item.recorded_template or "-", [0, 0, 0])
            row[0] += 1
            row[1] += item.corrected == item.recorded
            row[2] += item.corrected == item.replayed
        if item.same_prompt is not None:
            self.prompts_compared += 1
            self.prompts_identical += item.same_prompt
        if item.changed:
            self.changed.append(item)


def _replay_settings(settings: Settings, options: ReplayOptions) -> Settings:
    """The configured run settings with the replay's own server and assistant, validated."""
    overrides = {"url": options.url, "assistant_id": options.assistant_id}
    values = {**settings.langgraph.model_dump(), **{k: v for k, v in overrides.items() if v}}
    try:
        langgraph = LangGraphSettings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, None)) from None
    return settings.model_copy(update={"langgraph": langgraph})


async def replay(
    store: Store,
    settings: Settings,
    filters: Filters,
    options: ReplayOptions,
    *,
    on_replayed: Any = None,
) -> ReplayReport:
    """Render stored messages with a template, run them, and compare with the log and corrections.

    At most `options.concurrency` runs are in flight; rows are read as they are needed. Nothing is
    written unless `options.record`, and then only runs that produced a decision replace the
    recorded one (decided_by='replay'); corrections stay as they were.
    """
    if options.concurrency < 1:
        raise TriageError("--concurrency must be at least 1")
    run_settings = _replay_settings(settings, options)
    renderer = PromptRenderer(options.template or settings.prompt.template)
    report = ReplayReport(
        renderer.template_hash,
        str(renderer.template_path),
        run_settings.langgraph.assistant_id,
        run_settings.langgraph.url,
    )
    async with RunsClient(RunsSettings.of(run_settings.langgraph)) as runs:
        await runs.check_reachable()
        pipeline = Pipeline(run_settings, renderer, runs, store)
        slots = asyncio.Semaphore(options.concurrency)

        async def one(record: DecisionRecord, message: StoredMessage, corrected: Verdict | None) -> None:
            try:
                item = await _replay_one(pipeline, record, message, corrected, options)
                report.add(item)
                if on_replayed is not None:
                    on_replayed(item)
            finally:
                slots.release()

        try:
            async with asyncio.TaskGroup() as group:
                for record, message, corrected in _replay_candidates(store, filters, options.limit, report):
                    await slots.acquire()
                    group.create_task(one(record, message, corrected))
        except ExceptionGroup as failed:
            raise _first_user_error(failed) from None
    report.changed.sort(key=lambda item: item.id)
    report.recorded_back = _recorded_back(report, options)
    return report


def _first_user_error(failed: BaseExceptionGroup[Any]) -> BaseException:
    """A template that fails on a stored field is the user's error: one line, not a task group."""
    for error in failed.exceptions:
        found = _first_user_error(error) if isinstance(error, BaseExceptionGroup) else error
        if isinstance(found, TriageError):
            return found
    return failed


def _recorded_back(report: ReplayReport, options: ReplayOptions) -> int:
    if not options.record:
        return 0
    return sum(n for (_, new), n in report.against_recorded.items() if new in LABELS)


def _replay_candidates(
    store: Store, filters: Filters, limit: int | None, report: ReplayReport
) -> Iterator[tuple[DecisionRecord, StoredMessage, Verdict | None]]:
    """Decisions whose message can be rendered again, newest first; the others counted as skipped."""
    latest = LATEST_CORRECTION.c
    query = select(DecisionRecord, StoredMessage, latest.decision, latest.thread_id).select_from(
        DecisionRecord
    )
    query = filtered(query, store.engine, filters, join_message=True)
    query = query.outerjoin(LATEST_CORRECTION, latest.id == latest_correction_id())
    query = query.order_by(DecisionRecord.id.desc())
    if limit is not None:
        query = query.limit(limit)
    with Session(store.engine) as session:
        for record, message, corrected_decision, corrected_thread in session.execute(
            query.execution_options(**STREAM)
        ):
            if record.status in ("unparseable", "pending"):
                report.skipped[record.status] += 1
            elif message.body_excerpt is None:
                report.skipped["purged"] += 1
            else:
                corrected = (
                    Verdict.of("ok", corrected_decision, corrected_thread)
                    if corrected_decision is not None
                    else None
                )
                yield record, message, corrected


async def _replay_one(
    pipeline: Pipeline,
    record: DecisionRecord,
    message: StoredMessage,
    corrected: Verdict | None,
    options: ReplayOptions,
) -> Replayed:
    """Render, decide and parse through the pipeline's own stages; record it when asked to.

    The threads offered are those recorded with the decision, so a prompt change is compared on
    equal terms; a decision recorded before candidates were kept gets the registry's current ones.
    """
    email_ = stored_email(message)
    raw = RawMessage(message.account, message.mailbox, message.uidvalidity, message.uid, b"")
    offered = (
        None if record.candidates is None else [ThreadCandidate.from_record(c) for c in record.candidates]
    )
    prepared = pipeline.render(raw, email_, offered, _examples(pipeline, record, raw, email_, options))
    outcome = decide_without_run(pipeline.settings.routing, email_, prepared.candidates)
    if outcome is None:
        outcome = await pipeline.run(prepared)
    replayed = Verdict.of(outcome.status, outcome.decision, outcome.thread_id)
    if options.record and pipeline.store is not None and replayed.label in LABELS:
        _record_replayed(pipeline.store, record.id, pipeline.renderer.template_hash, prepared, outcome)
    same_template = record.prompt is not None and record.template_hash == pipeline.renderer.template_hash
    return Replayed(
        record.id,
        message.mailbox,
        message.uid,
        message.subject or "",
        Verdict.of(record.status, record.decision, record.thread_id),
        corrected,
        replayed,
        outcome.reason or outcome.problem or outcome.error_text,
        record.prompt == prepared.prompt if same_template else None,
        record.template_hash,
    )


def _examples(
    pipeline: Pipeline, record: DecisionRecord, raw: RawMessage, email_: Email, options: ReplayOptions
) -> list[Example]:
    """The examples to offer: those recorded, none, or those chosen now from what was known then."""
    if options.examples == "none":
        return []
    if options.examples == "recorded":
        return [Example.from_record(e) for e in record.examples or ()]
    before = as_utc(record.created_at)
    return pipeline.examples.choose(raw.account, email_, before=before, leave_out=record.id)


def _record_replayed(
    store: Store, decision_id: int, template_hash: str, prepared: Prepared, outcome: Outcome
) -> None:
    """Make the replayed answer the recorded one, with the provenance of what gave it.

    Only the decision is rewritten: threads and mailbox actions are routing's, and replay does not route.
    """
    with store.sessions.begin() as session:  # under the write lock from its first read
        record = session.get_one(DecisionRecord, decision_id)
        record.prompt, record.template_hash = prepared.prompt, template_hash
        record.assistant_id = prepared.request["assistant_id"]
        record.request_metadata = prepared.request["metadata"]
        record.examples = [example.as_record() for example in prepared.examples]
        for outcome_field in fields(Outcome):
            if outcome_field.name != "attempts":
                setattr(record, outcome_field.name, getattr(outcome, outcome_field.name))
        record.decided_by = f"replay:{outcome.decided_by}"
        record.attempts += outcome.attempts
        record.updated_at = datetime.now(UTC)
