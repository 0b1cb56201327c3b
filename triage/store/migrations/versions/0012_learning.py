"""Decisions that learn: the examples a prompt offered, and what kind of label a correction is.

- `decisions.examples`: the past decisions offered to the assistant as examples (prompt.max_examples),
  kept so `show` prints them and `replay` renders the same prompt again.
- `corrections.kind`: `correction` (a person changed the decision), `confirmation` (a person accepted
  it) or `filing` (the user moved the message back, or into the folder of another decision's action).
  Every kind is a label the examples draw on; rows written before this are corrections.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("decisions", sa.Column("examples", sa.JSON))
    op.add_column(
        "corrections", sa.Column("kind", sa.String(20), nullable=False, server_default="correction")
    )
