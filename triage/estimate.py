"""`triage backfill --estimate`: what a backfill would send, in tokens and money, before it runs.

The messages a backfill would triage are read and their prompts rendered exactly as the backfill
would; nothing is sent and nothing is written. A message that a rule decides, or that is a copy of
mail already decided, costs no run. The answer's tokens cannot be counted before it exists: the
average the store has measured is used, else `ASSUMED_OUTPUT_TOKENS`, and the estimate says which.
"""

from __future__ import annotations

from dataclasses import dataclass

from triage.config import CostSettings
from triage.message import Unparseable
from triage.pipeline import Pipeline, Prepared
from triage.tokens import estimate_tokens, estimator

ASSUMED_OUTPUT_TOKENS = 60  # a decision object of the contract, with a one-sentence reason


@dataclass(slots=True)
class Estimate:
    messages: int = 0
    to_send: int = 0
    without_run: int = 0  # decided by a rule, or a copy of mail decided already
    unparseable: int = 0
    prompt_tokens: int = 0

    def add(self, pipeline: Pipeline, prepared: Prepared | Unparseable) -> None:
        self.messages += 1
        if isinstance(prepared, Unparseable):
            self.unparseable += 1
        elif prepared.without_run is not None or pipeline.is_copy(prepared.raw, prepared.email):
            self.without_run += 1
        else:
            self.to_send += 1
            self.prompt_tokens += estimate_tokens(prepared.prompt)

    def lines(self, cost: CostSettings, measured_output: float | None) -> list[str]:
        """The estimate in words: counts, tokens, and money where prices are configured."""
        each = self.prompt_tokens / self.to_send if self.to_send else 0
        output_each = measured_output if measured_output is not None else ASSUMED_OUTPUT_TOKENS
        output_tokens = round(output_each * self.to_send)
        whence = "the store's measured average" if measured_output is not None else "assumed"
        lines = [
            f"estimate: {self.messages:,} messages to triage: {self.to_send:,} runs to send, "
            f"{self.without_run:,} decided without a run, {self.unparseable:,} unparseable",
            f"prompt tokens: {self.prompt_tokens:,} ({each:,.0f} a run; counted as {estimator()})",
            f"output tokens: about {output_tokens:,} ({output_each:,.0f} a run, {whence})",
        ]
        if cost.input_per_million is None or cost.output_per_million is None:
            return [*lines, "cost: set [cost] input_per_million and output_per_million to see it"]
        spent = self.prompt_tokens * cost.input_per_million + output_tokens * cost.output_per_million
        return [*lines, f"cost: about {spent / 1e6:,.2f} {cost.currency}; nothing was sent or written"]
