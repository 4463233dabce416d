"""pyworkflowy_nb in Jupyter: cell magics, the notebook session, kernel-safe runs, the live view.

Load it in a notebook with ``%load_ext pyworkflowy_nb``; then::

    %%task load
    pd.read_csv("data.csv")

    %%task clean --after load
    load.dropna()

    %wfy_run            # runs load, then clean; both results land in the namespace

``runner.run()`` works in a cell as is (the run goes to a dedicated loop thread), and so does
``await runner.arun()``. :func:`enable_nest_asyncio` is an opt-in alternative for code that
insists on the kernel's own loop.

Importing this package never needs ipywidgets: ``RunnerWidget`` and ``watch`` are loaded on
first use, and say how to install what is missing.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from ._exceptions import RunInProgressError as RunInProgressError
from ._exceptions import SessionCycleError as SessionCycleError
from ._exceptions import SessionError as SessionError
from ._loop import enable_nest_asyncio as enable_nest_asyncio
from ._runs import Run as Run
from ._session import Session as Session

if TYPE_CHECKING:
    from ._checkpoint import CloudpickleCheckpointer as CloudpickleCheckpointer
    from ._widget import RunnerWidget as RunnerWidget
    from ._widget import watch as watch

__all__ = [
    "CloudpickleCheckpointer",
    "Run",
    "RunInProgressError",
    "RunnerWidget",
    "Session",
    "SessionCycleError",
    "SessionError",
    "enable_nest_asyncio",
    "get_session",
    "load_ipython_extension",
    "unload_ipython_extension",
    "watch",
]

# name -> private module; loaded on first use (ipywidgets, cloudpickle are optional at import)
_LAZY = {"RunnerWidget": "_widget", "watch": "_widget", "CloudpickleCheckpointer": "_checkpoint"}

_sessions: weakref.WeakKeyDictionary[Any, Session] = weakref.WeakKeyDictionary()


def get_session(shell: Any = None) -> Session:
    """The workflow session of ``shell`` (default: the running IPython), created on first use."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None:
            raise RuntimeError(
                "get_session() needs a running IPython or Jupyter kernel; outside one, build a "
                "session over your own namespace with Session(user_ns={})"
            )
    session = _sessions.get(shell)
    if session is None:
        session = _sessions[shell] = Session(shell=shell)
    return session


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (``%load_ext pyworkflowy_nb`` ends up here)."""
    from ._magics import WorkflowMagics

    ipython.register_magics(WorkflowMagics(ipython, get_session(ipython)))
    from ._widget import register_display

    register_display(ipython)  # display(runner) shows the live view from now on


def unload_ipython_extension(ipython: Any) -> None:
    """Stop schedules and runs, release pools and remove the magics; task definitions stay."""
    session = _sessions.get(ipython)
    if session is not None:
        session.close()
    from ._magics import WorkflowMagics

    registry = ipython.magics_manager.magics
    for kind, names in WorkflowMagics.magics.items():
        for name in names:
            registry[kind].pop(name, None)


def __getattr__(name: str) -> Any:
    # The widget pulls in ipywidgets; load it only when somebody asks for it.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
