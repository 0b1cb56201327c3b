"""`python -m triage`."""

from triage.cli import run

run()
