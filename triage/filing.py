"""The user's own filing, read as labels: mail moved back out of an action's folder, or into one.

Routing moves a decided message into its action's folder (`move_to`) and records where. When the
same mail (by Message-ID) appears again in a watched mailbox:
- where triage moved it, or in the folder of the decision it already has: the same decision again,
  carried over with its routing (no run, nothing done twice);
- in the folder of another decision's action (new-task or ignore): the user filed it there, a label
  of the earlier decision to that decision;
- anywhere else, after triage had moved it away: the user moved it back, a label of the earlier
  decision to `learning.moved_back_decision`.
Either label is recorded with the new sighting's own outcome, that decision, and no run is sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from triage.config import Settings
from triage.message import Email
from triage.sources import RawMessage
from triage.store.decisions import Outcome
from triage.store.labels import NewLabel
from triage.store.moves import Earlier

_FILED_DECISIONS = ("new-task", "ignore")  # a folder says these; a thread it cannot name


@dataclass(frozen=True, slots=True)
class Filed:
    """What a sighting of moved mail means: the earlier decision again, or the user's label."""

    carry_from: int | None = None  # the earlier decision to record again as it is
    outcome: Outcome | None = None  # the user's decision, with the label it gives the earlier one
    label: NewLabel | None = None


class Filing:
    """Where routing moves mail, from the settings; what a sighting of moved mail means."""

    def __init__(self, settings: Settings) -> None:
        actions = settings.routing.actions
        self.targets = {a.move_to for a in actions.values() if a.move_to}
        by_folder: dict[str, list[str]] = {}
        for kind, action in actions.items():
            if action.move_to:
                by_folder.setdefault(action.move_to, []).append(kind)
        # A folder shared by two decisions says neither.
        self.folder_decisions = {
            folder: kinds[0]
            for folder, kinds in by_folder.items()
            if len(kinds) == 1 and kinds[0] in _FILED_DECISIONS
        }
        self.moved_back_decision = settings.learning.moved_back_decision

    @property
    def active(self) -> bool:
        """Whether routing moves any mail (else no sighting can be of moved mail)."""
        return bool(self.targets)

    def read(self, raw: RawMessage, email: Email, earlier: Earlier) -> Filed | None:
        folder_says = self.folder_decisions.get(raw.mailbox)
        if earlier.moved_to == raw.mailbox or (folder_says is not None and folder_says == earlier.decision):
            return Filed(carry_from=earlier.decision_pk)
        if folder_says is not None:
            return self._filed(email, earlier, folder_says, f"moved into {raw.mailbox} by the user")
        # It sat in an action's folder: moved there by routing, or filed there by the user.
        left = earlier.moved_to or (earlier.mailbox if earlier.mailbox in self.targets else None)
        if left is not None and raw.mailbox not in self.targets:
            where = f"moved back from {left} to {raw.mailbox} by the user"
            return self._filed(email, earlier, self.moved_back_decision, where)
        return None

    @staticmethod
    def _filed(email: Email, earlier: Earlier, decision: str, where: str) -> Filed:
        title = (email.subject or "(no subject)") if decision == "new-task" else None
        outcome = Outcome(
            "ok",
            decision,
            title=title,
            reason=f"{where}: the user's filing",
            confidence=1.0,
            decided_by=f"filing:{earlier.decision_pk}",
        )
        return Filed(outcome=outcome, label=NewLabel(earlier.decision_pk, "filing", decision, where))
