"""Event-loop and message-routing helpers for runs inside a Jupyter kernel.

Two problems live here, both about threads the kernel does not own.

1. **The kernel's loop is already running.** The engine handles that itself: ``runner.run()``
   called from a thread whose loop runs drives the run on a dedicated loop thread and blocks, the
   way jupyter_core's ``run_sync`` does. nest_asyncio is the older answer; it is archived, clashes
   with anyio and tornado and breaks on some Python versions, so it is only an opt-in mode here
   (:func:`enable_nest_asyncio`). Once the kernel's loop is patched the engine notices and runs
   re-entrantly on it instead.

2. **Messages sent from the run's threads must name the cell that caused them.** Every iopub
   message carries a ``parent_header``; frontends file output (and ipywidgets' Output capture)
   under it. ipykernel 7 keeps the parent in context variables, so a thread whose context was
   copied while an *earlier* cell ran keeps sending under that old cell's header, and a thread
   whose context holds the kernel's initial empty header sends orphans (ipywidgets#4001,
   ipykernel#1450). :class:`ParentPin` captures the executing cell's parent and re-applies it in
   whatever context a run's events are delivered in, so widget comm updates, ``display`` updates
   and prints made from listeners all carry the right header.

Nothing here imports ipykernel at module import time: outside a kernel every helper is a no-op.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "ParentPin",
    "enable_nest_asyncio",
    "get_kernel",
    "nest_asyncio_enabled",
]

T = TypeVar("T")

# Which pin (by id) has already been applied in the current context; lets the per-event listener
# skip the work after the first event in a context.
_applied_pin: contextvars.ContextVar[int] = contextvars.ContextVar("wfy_applied_pin", default=0)


def get_kernel() -> Any | None:
    """The running ipykernel ``Kernel`` instance, or ``None`` outside a kernel."""
    mod = sys.modules.get("ipykernel.kernelbase")
    if mod is None:
        return None
    kernel_cls = getattr(mod, "Kernel", None)
    try:
        if kernel_cls is None or not kernel_cls.initialized():
            return None
        return kernel_cls.instance()
    except Exception:  # a half-torn-down kernel during interpreter exit
        return None


class ParentPin:
    """The parent header of the cell executing now, re-applicable on any thread.

    Use :meth:`capture` in the cell (main thread), then either call :meth:`apply` at the top of
    code that runs elsewhere, wrap a callable with :meth:`wrap`, or subscribe :meth:`listener`
    to a runner *before* any listener that sends messages (a widget), so that everything those
    listeners send is filed under the cell.
    """

    def __init__(self, kernel: Any, parent: dict[str, Any], ident: Any = None) -> None:
        self.kernel = kernel
        self.parent = parent
        self.ident = ident
        self._origin = threading.get_ident()

    @classmethod
    def capture(cls) -> ParentPin | None:
        """Pin the current cell's parent; ``None`` outside a kernel or outside a request."""
        kernel = get_kernel()
        if kernel is None:
            return None
        try:
            parent = kernel.get_parent("shell")
        except Exception:
            return None
        if not parent or not parent.get("header"):
            return None
        ident = None
        var = getattr(kernel, "_shell_parent_ident", None)
        if isinstance(var, contextvars.ContextVar):
            ident = var.get(None)
        return cls(kernel, parent, ident)

    @property
    def msg_id(self) -> str:
        return str(self.parent["header"].get("msg_id", ""))

    def apply(self) -> None:
        """Make the pinned parent current for the calling context (thread or asyncio task).

        Only context-local state is touched: the kernel's global fallback (what a fresh thread
        sees) is left alone, so pinning an old cell can never redirect a newer cell's output.
        """
        kernel = self.kernel
        parent = self.parent
        # ipykernel >= 7: the shell parent is a ContextVar read by comms (ipywidgets).
        var = getattr(kernel, "_shell_parent", None)
        if isinstance(var, contextvars.ContextVar):
            var.set(parent)
            ident_var = getattr(kernel, "_shell_parent_ident", None)
            if isinstance(ident_var, contextvars.ContextVar) and self.ident is not None:
                ident_var.set(self.ident)
        # display(), update_display() and clear_output() go through the display publisher.
        shell = getattr(kernel, "shell", None)
        pub = getattr(shell, "display_pub", None)
        _set_thread_parent(pub, parent)
        # print() from the run's threads goes through the kernel's OutStreams.
        for stream in (sys.stdout, sys.stderr):
            _set_thread_parent(stream, parent)
        _applied_pin.set(id(self))

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``fn`` under the pinned parent, in a private copy of the current context."""

        def pinned() -> T:
            self.apply()
            return fn(*args, **kwargs)

        return contextvars.copy_context().run(pinned)

    def wrap(self, fn: Callable[..., T]) -> Callable[..., T]:
        """Return ``fn`` made to run under the pinned parent wherever it is called."""

        def wrapper(*args: Any, **kwargs: Any) -> T:
            return self.run(fn, *args, **kwargs)

        wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
        return wrapper

    def listener(self, event: object) -> None:
        """A runner listener: pins the parent in the context the event is delivered in.

        Events are delivered synchronously, one listener after another, in the same context, so
        listeners subscribed after this one send their messages under the pinned cell. Setting
        the variables in an asyncio task's context also covers what that task does later.
        """
        if threading.get_ident() == self._origin:
            return  # the cell's own thread already has the right parent
        if _applied_pin.get() == id(self):
            return
        try:
            self.apply()
        except Exception:  # never let routing break a run
            return


def _set_thread_parent(obj: Any, parent: dict[str, Any]) -> None:
    setter = getattr(obj, "set_thread_parent", None)
    if setter is None:
        return
    try:
        setter(parent)
    except Exception:
        return


# -- nest_asyncio opt-in ------------------------------------------------------------------------

_NEST_HINT = (
    "nest_asyncio mode needs the nest-asyncio package: `pip install nest-asyncio` "
    "(or keep the default mode, which needs nothing: runner.run() then drives the run on a "
    "dedicated loop thread)"
)


def enable_nest_asyncio(
    loop: asyncio.AbstractEventLoop | None = None,
) -> asyncio.AbstractEventLoop | None:
    """Opt in to running ``runner.run()`` re-entrantly on the kernel's own loop.

    The default needs no patching: a run started from a cell goes to a dedicated loop thread.
    This mode patches the kernel's event loop with nest_asyncio instead, so tasks run on the
    kernel's main thread and loop (some libraries insist on that). nest_asyncio is unmaintained
    and known to clash with anyio and tornado, and the patch cannot be undone for the life of the
    kernel; restart the kernel to leave the mode. Returns the patched loop (``None`` when
    called outside a running loop, where nest_asyncio patches the thread's default loop).
    """
    try:
        import nest_asyncio
    except ImportError as exc:  # pragma: no cover - nest-asyncio is a declared dependency
        raise ImportError(_NEST_HINT) from exc
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            nest_asyncio.apply()
            return None
    nest_asyncio.apply(loop)
    return loop


def nest_asyncio_enabled(loop: asyncio.AbstractEventLoop | None = None) -> bool:
    """True when ``loop`` (default: the running one) has been patched by nest_asyncio."""
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
    return bool(getattr(loop, "_nest_patched", False))
