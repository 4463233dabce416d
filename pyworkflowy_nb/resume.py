"""Asking what a resume would restore, without building a runner.

``TaskRunner.resume(checkpoint)`` restores a submitted task when the checkpoint holds a
completed record under its key whose fingerprint matches. A layer that wants to know that
ahead of a run (the notebook restores stored results as soon as a cell is defined) asks these
two functions instead of submitting to a throwaway runner:

- :func:`task_fingerprint` computes the fingerprint a submission would get (task name,
  ``version=``, arguments, parents' fingerprints);
- :func:`restorable` returns the record a resume would restore for a key and fingerprint, or
  None; its ``"value"`` is the stored result. The records are those a file checkpointer's
  ``read_records()`` returns;
- :func:`encode_args` is the deterministic byte form of arguments both use (canonical JSON,
  else pickle, else repr), for keys of one's own (a result-cache key, say).
"""

from __future__ import annotations

from ._identity import encode_args as encode_args
from ._identity import task_fingerprint as task_fingerprint
from ._persist import restorable as restorable

__all__ = ["encode_args", "restorable", "task_fingerprint"]
