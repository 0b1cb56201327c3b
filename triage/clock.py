"""Time as triage keeps it: the present in UTC, and how long to wait before trying again."""

from __future__ import annotations

import random
from datetime import UTC, datetime


def utc_now() -> datetime:
    """Every time triage stores or compares is in UTC."""
    return datetime.now(UTC)


def backoff_s(failures: int, base_s: float, cap_s: float) -> float:
    """Exponential backoff with jitter: base * 2^(failures-1), capped, times 0.5..1.

    The jitter keeps many clients (or many messages) that failed together from retrying together.
    """
    return min(cap_s, base_s * 2 ** max(failures - 1, 0)) * random.uniform(0.5, 1.0)
