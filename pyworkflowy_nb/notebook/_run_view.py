"""The output of one ``%wfy_run``: the live widget while the run goes on, a static picture after.

Design decisions:

- The output is displayed with a ``display_id``. When the run ends (completed, failed or
  cancelled) the same output is *updated in place* to the static bundle of ``_static``: a
  saved notebook then holds HTML and SVG that any renderer shows, with no kernel and no widget
  state, instead of a widget reference that reads "model not found" after a reload. The live
  view is for the run itself; once it is over there is nothing left for it to animate.
- A blocking run is finished by the cell that ran it, still inside that cell. A background run
  is finished from a worker thread when its future settles, under the parent header pinned
  when the cell started it (ipykernel files the update under that cell); ``%wfy_wait`` also
  finishes it from the waiting cell, so a notebook executed top to bottom (nbclient, nbval)
  always receives the update (nbclient only reads the messages of the cell it is executing).
  :meth:`RunView.finish` draws once, thread-safely; ``%wfy_wait`` re-sends that picture.
- The views are kept in a weak mapping from the run's runner: the session itself does not need
  to know how runs are displayed.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

from ..display import snapshot_handles
from . import _static
from ._loop import ParentPin

__all__ = ["RunView", "finish_view", "show_run", "watch_background"]

_views: weakref.WeakKeyDictionary[Any, RunView] = weakref.WeakKeyDictionary()


class RunView:
    """One displayed run; :meth:`finish` swaps the live widget for the static picture."""

    def __init__(self, run: Any, widget: Any, handle: Any, pin: ParentPin | None) -> None:
        self.run = run
        self.widget = widget
        self.handle = handle
        self.pin = pin
        self._lock = threading.Lock()
        self._finished = False
        self._final: dict[str, str] | None = None
        self._started = time.time()

    @property
    def finished(self) -> bool:
        return self._finished

    def bundle(self) -> dict[str, str]:
        """The static bundle of the run as it stands now."""
        runner = self.run.runner
        nodes = snapshot_handles(runner.handles)
        widget = self.widget
        started = getattr(widget, "_run_started", None)
        finished = getattr(widget, "_run_finished", None)
        elapsed = _static.run_span(nodes, time.time(), running=False, started=started,
                                   finished=finished)
        extra = ""
        timeline = getattr(widget, "timeline_html", None)
        if callable(timeline):
            opened = " open" if len(nodes) <= _static.OPEN_TABLE_ROWS else ""
            extra = (f'<details class="wfy-timeline-box"{opened}><summary style="cursor:pointer">'
                     f"Timeline</summary>{timeline()}</details>")
        return _static.static_bundle(nodes, elapsed=elapsed, extra_html=extra)

    def finish(self, *, resend: bool = False) -> None:
        """Replace the live output by the static picture, drawn once.

        A later call returns at once, or with ``resend`` sends the same picture again from the
        calling cell: a frontend that only listens to the cell executing now (nbclient) missed
        the update a background run's thread sent under the cell that started it.
        """
        with self._lock:
            if self._finished:
                if resend and self._final is not None:
                    self.handle.update(self._final, raw=True)
                return
            self._finished = True
            flush = getattr(self.widget, "flush", None)
            if callable(flush):
                flush(timeout=30.0)
            self._final = self.bundle()
            self.handle.update(self._final, raw=True)
            close = getattr(self.widget, "close", None)
            if callable(close):
                close()


def show_run(run: Any, widget: Any, *, background: bool) -> RunView:
    """Display ``widget`` for ``run`` so that it can be replaced when the run ends."""
    from IPython.display import display

    bundle = widget._repr_mimebundle_()
    bundle["text/plain"] = f"wfy run of {len(run.handles)} task(s) in progress"
    handle = display(bundle, raw=True, display_id=True)  # type: ignore[no-untyped-call]
    view = RunView(run, widget, handle, ParentPin.capture() if background else None)
    _views[run.runner] = view
    return view


def watch_background(view: RunView) -> None:
    """Finish ``view`` off the run's loop thread once its background future settles."""
    future = view.run.future
    if future is None:
        return

    finish = view.pin.wrap(view.finish) if view.pin is not None else view.finish

    def settled(_: Any) -> None:
        threading.Thread(target=finish, name="wfy-run-view", daemon=True).start()

    future.add_done_callback(settled)


def finish_view(run: Any) -> bool:
    """Finish the displayed view of ``run`` from the calling cell; True if there is a view."""
    view = _views.get(run.runner)
    if view is None:
        return False
    view.finish(resend=True)
    return True
