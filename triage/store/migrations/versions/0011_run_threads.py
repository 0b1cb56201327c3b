"""A decision remembers the server thread that holds its run, until triage has released it.

A run is recorded as soon as the server acknowledges it (run and thread id), before its result:
a process that dies while it waits leaves the run joinable, and the next one joins it instead of
paying for the model call again. Once the outcome is safely recorded, the thread is deleted (under
`on_completion = "delete"`) and the column cleared; a thread id left on a decided row is one whose
deletion a crash interrupted.

A process also says how many runs it lets be in flight now (the adaptive limit), for `triage status`.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("decisions", sa.Column("run_thread_id", sa.String(100)))
    op.create_index("ix_decisions_run_thread_id", "decisions", ["run_thread_id"])
    op.add_column("processes", sa.Column("run_concurrency", sa.Integer))
