"""Priming: which defined cells a checkpoint already holds, found without running anything.

After a kernel restart, defining a cell restores its stored result (and that of any task whose
upstream it completes) into the namespace, so cells can be re-run in any order. Whether a cell
would be restored is the engine's rule, asked through its public query
(:mod:`pyworkflowy_nb.resume`): the fingerprint a submission would get, folded upstream first
along the plan, against the checkpoint's records. No runner is built for the question.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import TaskResult, TaskStatus
from ..resume import restorable, task_fingerprint
from ._cells import CellTask

__all__ = ["stored_results"]


def stored_results(plan: Sequence[CellTask], targets: set[str],
                   records: Mapping[str, dict[str, Any]],
                   version_of: Callable[[CellTask], str]) -> list[TaskResult]:
    """The results a resume would restore for the ``targets`` among ``plan`` (which holds
    their whole upstream, upstream first), as completed, restored ``TaskResult``s."""
    restored: list[TaskResult] = []
    fingerprints: dict[str, str] = {}
    for cell in plan:  # upstream first: a child's fingerprint folds in its parents'
        fp = fingerprints[cell.name] = task_fingerprint(
            cell.name, version=version_of(cell), parents=[fingerprints[a] for a in cell.after])
        rec = restorable(records, cell.name, fp) if cell.name in targets else None
        if rec is not None:
            restored.append(TaskResult(cell.name, cell.name, TaskStatus.COMPLETED,
                                       rec.get("value"), None, rec["attempts"],
                                       rec["started_at"], rec["finished_at"], True))
    return restored
