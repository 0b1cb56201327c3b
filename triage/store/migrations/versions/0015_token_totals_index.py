"""The token totals of `triage stats` from an index, not from the decisions' rows.

`stats` sums `prompt_tokens` and `output_tokens` over the log (no daily rollup holds them). Those
columns sit after each row's body, prompt and raw answer (about 15 KB in a real log), so the sum
read every row's overflow pages: 3.7 s of a 3.9 s `triage stats` on a log of 1,000,000 decisions.
An index of (created_at, prompt_tokens, output_tokens, tokens_measured) covers the query, and a
range of days reads only its slice.

Revision ID: 0015
Revises: 0014
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_decisions_tokens",
        "decisions",
        ["created_at", "prompt_tokens", "output_tokens", "tokens_measured"],
    )
