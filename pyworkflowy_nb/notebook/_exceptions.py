"""The notebook session's errors: mistakes in using it, raised by the model, shown by the magics.

::

    SessionError                 a mistake in using the session: a bad task name or option,
    │                            an unknown task, a checkpoint path that cannot be a file...
    ├── SessionCycleError        a definition that would close a dependency cycle; also the
    │                            engine's CycleError
    └── RunInProgressError       a run of this session is still going

The session (the model) raises these and never IPython's ``UsageError``, so it can be used and
tested from plain Python; the magics (the interface) turn every ``SessionError`` into a
``UsageError``, which IPython shows as one line without a traceback. Each message names the fix.
"""

from __future__ import annotations

from ..exceptions import CycleError

__all__ = ["RunInProgressError", "SessionCycleError", "SessionError"]


class SessionError(Exception):
    """A mistake in using the notebook session; the message says how to fix it."""


class SessionCycleError(SessionError, CycleError):
    """Defining a task would close a dependency cycle; the previous definition is kept."""


class RunInProgressError(SessionError):
    """A run of this session is still going (one started in the background)."""
