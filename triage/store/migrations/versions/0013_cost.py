"""Cost: tokens per decision, and the quoted part of a message apart from its new text.

- `decisions.prompt_tokens`, `decisions.output_tokens`: what the run cost, as the model reported it
  (`usage_metadata`, or the provider's token usage), else triage's estimate of the prompt;
  `decisions.tokens_measured` says which (true: reported by the model).
- `messages.quoted_excerpt`: the quoted history and signature set apart from the new text
  (prompt.strip_quoted), so a replay renders the same prompt.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("decisions", sa.Column("prompt_tokens", sa.Integer))
    op.add_column("decisions", sa.Column("output_tokens", sa.Integer))
    op.add_column("decisions", sa.Column("tokens_measured", sa.Boolean))
    op.add_column("messages", sa.Column("quoted_excerpt", sa.Text))
