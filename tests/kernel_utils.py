"""Drive a real Jupyter kernel from a test.

The notebook layer's promises (magics, ``run()`` inside a running loop, top-level await,
background runs, parent headers on messages sent from other threads, resume after SIGKILL) only
mean something inside a real ipykernel process, so these tests start one with jupyter_client.

Design notes:
- The kernel is launched with this interpreter (``sys.executable -m ipykernel_launcher``) through
  a throwaway kernelspec directory, so a stray system-wide ``python3`` kernelspec can never pick
  another Python.
- Every iopub message is kept, in arrival order, in :attr:`Kernel.iopub`. ``execute()`` returns
  the messages whose parent is the request it sent, and leaves the others (output of a background
  run arriving later, say) for :meth:`Kernel.wait_for`.
- Timeouts are generous and only guard against hangs; nothing here measures speed.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine_helpers import HANG_GUARD
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

REPO = Path(__file__).resolve().parent.parent

#: Default seconds to wait for one cell to finish; a guard against hangs, not a speed limit.
#: A kernel is a process of its own competing for a busy machine: four times the usual guard.
CELL_TIMEOUT = 4 * HANG_GUARD
# The MIME type of an ipywidgets view in a display message.
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

Message = dict[str, Any]


class KernelError(AssertionError):
    """A cell raised inside the kernel when the test expected it to succeed."""


@dataclass
class CellResult:
    """Everything a kernel sent back for one executed cell."""

    msg_id: str
    code: str
    reply: Message
    messages: list[Message] = field(default_factory=list)

    @property
    def status(self) -> str:
        return str(self.reply["content"]["status"])

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def stdout(self) -> str:
        return self._stream("stdout")

    @property
    def stderr(self) -> str:
        return self._stream("stderr")

    def _stream(self, name: str) -> str:
        return "".join(
            m["content"]["text"]
            for m in self.messages
            if m["msg_type"] == "stream" and m["content"]["name"] == name
        )

    @property
    def error(self) -> Message | None:
        """The ``error`` iopub content (ename, evalue, traceback), if the cell raised."""
        for m in self.messages:
            if m["msg_type"] == "error":
                return dict(m["content"])
        if self.status == "error":  # e.g. a UsageError: no error message, just the reply
            return dict(self.reply["content"])
        return None

    @property
    def value(self) -> str | None:
        """The text/plain repr of the cell's ``execute_result``, if any."""
        for m in self.messages:
            if m["msg_type"] == "execute_result":
                return str(m["content"]["data"].get("text/plain"))
        return None

    def of_type(self, *msg_types: str) -> list[Message]:
        return [m for m in self.messages if m["msg_type"] in msg_types]

    def text(self) -> str:
        """All human-readable output (streams, reprs, error text) joined, for assertions."""
        parts: list[str] = []
        for m in self.messages:
            c = m["content"]
            if m["msg_type"] == "stream":
                parts.append(c["text"])
            elif m["msg_type"] in ("execute_result", "display_data", "update_display_data"):
                parts.append(str(c["data"].get("text/plain", "")))
            elif m["msg_type"] == "error":
                parts.append(f"{c['ename']}: {c['evalue']}")
        return "\n".join(parts)

    def check(self) -> CellResult:
        """Raise :class:`KernelError` with the kernel's traceback if the cell failed."""
        if not self.ok:
            err = self.error or self.reply["content"]
            tb = "\n".join(err.get("traceback", []))
            raise KernelError(
                f"cell failed: {err.get('ename')}: {err.get('evalue')}\n--- code ---\n"
                f"{self.code}\n--- traceback ---\n{_strip_ansi(tb)}"
            )
        return self


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


class Kernel:
    """A real ipykernel subprocess plus a blocking client, with helpers for tests."""

    def __init__(
        self,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self._specdir = tempfile.TemporaryDirectory(prefix="wfy-kspec-")
        spec_path = Path(self._specdir.name) / "wfy-test-python"
        spec_path.mkdir()
        spec = {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "pyworkflowy_nb tests",
            "language": "python",
        }
        (spec_path / "kernel.json").write_text(json.dumps(spec))
        ksm = KernelSpecManager(kernel_dirs=[self._specdir.name], ensure_native_kernel=False)
        # IPC transport: no TCP ports to race for when tests start kernels in parallel. The
        # socket path must be absolute: kernel and client run in different folders.
        self.km = KernelManager(
            kernel_name="wfy-test-python", kernel_spec_manager=ksm, transport="ipc",
            ip=os.path.join(self._specdir.name, "kernel-ipc"),
        )
        kernel_env = dict(os.environ)
        # The package is run from the checkout, installed or not.
        kernel_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), kernel_env.get("PYTHONPATH", "")) if p
        )
        # Keep the kernel away from the developer's files: no IPython profile or startup
        # files, checkpoints (.wfy/) in a private working folder, and a throwaway signing key
        # instead of the one in ~/.config.
        self._ipdir = tempfile.TemporaryDirectory(prefix="wfy-ipython-")
        kernel_env["IPYTHONDIR"] = self._ipdir.name
        kernel_env["PYWORKFLOWY_NB_KEY_FILE"] = os.path.join(self._ipdir.name, "wfy.key")
        kernel_env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
        if env:
            kernel_env.update(env)
        if cwd is None:
            self._workdir: tempfile.TemporaryDirectory[str] | None = (
                tempfile.TemporaryDirectory(prefix="wfy-kernel-cwd-"))
            cwd = self._workdir.name
        else:
            self._workdir = None
        self.cwd = str(cwd)
        self.km.start_kernel(env=kernel_env, cwd=self.cwd)
        self.kc: BlockingKernelClient = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=startup_timeout)
        #: Every iopub message received so far, in arrival order.
        self.iopub: list[Message] = []
        self._seen = 0

    # -- execution -------------------------------------------------------------------------

    def execute(self, code: str, timeout: float = CELL_TIMEOUT, check: bool = True) -> CellResult:
        """Run one cell and wait until the kernel is idle again after it.

        With ``check`` (the default) a failing cell raises :class:`KernelError` carrying the
        kernel-side traceback.
        """
        code = textwrap.dedent(code).strip("\n")
        msg_id = self.kc.execute(code, allow_stdin=False)
        return self.collect(msg_id, code, timeout=timeout, check=check)

    def submit(self, code: str) -> tuple[str, str]:
        """Send a cell without waiting for it; finish with :meth:`collect`."""
        code = textwrap.dedent(code).strip("\n")
        return self.kc.execute(code, allow_stdin=False), code

    def collect(self, msg_id: str, code: str = "", timeout: float = CELL_TIMEOUT,
                check: bool = True) -> CellResult:
        """Wait for the cell sent as ``msg_id`` to finish and return what it produced."""
        deadline = time.monotonic() + timeout
        idle = False
        while not idle:
            msg = self._next_iopub(deadline, f"cell did not go idle:\n{code}")
            if (
                msg["msg_type"] == "status"
                and msg["parent_header"].get("msg_id") == msg_id
                and msg["content"]["execution_state"] == "idle"
            ):
                idle = True
        reply = self._shell_reply(msg_id, deadline)
        result = CellResult(
            msg_id=msg_id,
            code=code,
            reply=reply,
            messages=[m for m in self.iopub if m["parent_header"].get("msg_id") == msg_id],
        )
        return result.check() if check else result

    def value(self, expr: str, timeout: float = CELL_TIMEOUT) -> Any:
        """Evaluate ``expr`` in the kernel and return it, sent across as JSON."""
        res = self.execute(f"import json as _j; print(_j.dumps({expr}))", timeout=timeout)
        return json.loads(res.stdout.strip().splitlines()[-1])

    def wait_for(
        self,
        predicate: Callable[[Message], bool],
        timeout: float = CELL_TIMEOUT,
        what: str = "message",
    ) -> Message:
        """Return the first iopub message (already received or arriving) matching ``predicate``."""
        for msg in self.iopub:
            if predicate(msg):
                return msg
        deadline = time.monotonic() + timeout
        while True:
            msg = self._next_iopub(deadline, f"no {what} arrived")
            if predicate(msg):
                return msg

    def messages_since(self, start: int) -> list[Message]:
        return self.iopub[start:]

    def _next_iopub(self, deadline: float, why: str) -> Message:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{why} (timed out)")
        try:
            msg: Message = self.kc.get_iopub_msg(timeout=min(remaining, 5.0))
        except queue.Empty:
            if not self.km.is_alive():
                raise RuntimeError(f"{why}: the kernel died") from None
            return self._next_iopub(deadline, why)
        self.iopub.append(msg)
        return msg

    def _shell_reply(self, msg_id: str, deadline: float) -> Message:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no execute_reply")
            try:
                reply: Message = self.kc.get_shell_msg(timeout=min(remaining, 5.0))
            except queue.Empty:
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        pid: int = self.value("__import__('os').getpid()")
        return pid

    def sigkill(self) -> None:
        """Kill the kernel process outright, as an OOM killer or a crash would."""
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while self.km.is_alive():
            if time.monotonic() > deadline:
                raise TimeoutError("kernel survived SIGKILL")
            time.sleep(0.05)
        self.close()

    def close(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            if self.km.has_kernel:
                self.km.shutdown_kernel(now=True)
            self._specdir.cleanup()
            self._ipdir.cleanup()
            if self._workdir is not None:
                self._workdir.cleanup()

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def kernel_fixture_factory(
    cwd: str | os.PathLike[str] | None = None, setup: str | None = None
) -> Iterator[Kernel]:
    """Generator for a module-scoped pytest fixture: one kernel shared by a test module."""
    k = Kernel(cwd=cwd)
    try:
        if setup:
            k.execute(setup)
        yield k
    finally:
        k.close()
