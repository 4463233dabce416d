"""``pyworkflowy_nb.resume``: what a resume would restore, asked without a runner."""

from __future__ import annotations

from pathlib import Path

from pyworkflowy_nb import JSONCheckpointer, Task, TaskRunner
from pyworkflowy_nb.resume import restorable, task_fingerprint


def _double(x: int) -> int:
    return 2 * x


def _one() -> int:
    return 1


def test_task_fingerprint_is_the_one_a_submission_gets() -> None:
    runner = TaskRunner()
    a = runner.submit(Task(_one, name="a", version="v1"))
    b = runner.submit(Task(_double, name="b"), 3, depends_on=[a])
    assert task_fingerprint("a", version="v1") == a.fingerprint
    assert task_fingerprint("b", args=(3,), parents=[a.fingerprint]) == b.fingerprint
    assert task_fingerprint("b", args=(4,), parents=[a.fingerprint]) != b.fingerprint
    assert task_fingerprint("a", version="v2") != a.fingerprint
    runner.shutdown()


def test_restorable_matches_what_resume_restores(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.json"
    with TaskRunner(checkpointer=JSONCheckpointer(path)) as runner:
        runner.submit(Task(_one, name="a", version="v1"))
        runner.run()
    records = JSONCheckpointer(path).read_records()
    assert records is not None
    fp = task_fingerprint("a", version="v1")
    rec = restorable(records, "a", fp)
    assert rec is not None and rec["value"] == 1
    assert restorable(records, "a", task_fingerprint("a", version="v2")) is None
    assert restorable(records, "missing", fp) is None
    # The engine agrees: a resumed runner restores exactly that record.
    resumed = TaskRunner.resume(path)
    handle = resumed.submit(Task(_one, name="a", version="v1"))
    assert handle.restored and handle.result() == 1
    resumed.shutdown()
