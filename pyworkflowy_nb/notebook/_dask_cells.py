"""``%%task NAME --backend dask``: a cell and the values it reads, run on a Dask cluster.

Design decisions:

- The same shipping as ``--backend process`` (``_shipping``): the cell's source and the
  namespace values it references go by value with cloudpickle, so notebook functions, lambdas
  and data frames travel; only the executor differs. Its result comes back under the cell's
  name, and the engine's retries, timeouts, cancellation, the widget and the checkpoint treat
  the cell like any other (it is an asyncio task awaiting the cluster's answer).
- Which cluster: the address given with ``%wfy_config --dask ADDRESS`` (the lane opens its own
  ``distributed.Client`` on first use and closes it with the session), otherwise the client the
  notebook already made (``distributed.Client(...)``, found with ``distributed.get_client()``).
  The choice is made when a dask cell runs, so the client may be created after the cell is
  defined, or replaced between runs.
- ``pure=False``: each attempt is a new computation. With Dask's default, a retry would get the
  cached failure of the first attempt.
- ``distributed`` is imported only when a dask cell runs or an address is configured, so the
  notebook layer works without it and says how to install it when it is needed.
- Workers unpickle the runner function by reference, so they need pyworkflowy_nb installed
  (as they need any library a cell imports).
"""

from __future__ import annotations

import threading
from concurrent.futures import Executor
from typing import Any

from ._exceptions import SessionError

__all__ = ["DaskLane"]

_INSTALL = "`pip install \"pyworkflowy_nb[dask]\"` (or `pip install distributed`)"


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise SessionError(f"--backend dask needs Dask's distributed scheduler: {_INSTALL}, "
                         "then restart the kernel") from exc
    return distributed


class DaskLane:
    """Where the session's ``--backend dask`` cells go."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.address: str | None = None
        self._client: Any = None  # the lane's own client, for a configured address

    def configure(self, address: str | None) -> None:
        """Send dask cells to ``address`` (connecting now, so a typo shows at once), or, with
        None, to the notebook's own client again."""
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise SessionError(f"--dask needs a scheduler address such as tcp://host:8786, "
                             f"got {address!r}")
        with self._lock:
            old, self._client, self.address = self._client, None, None
        if old is not None:
            old.close()
        if address is None:
            return
        distributed = _distributed()
        try:
            client = distributed.Client(address, timeout="10s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise SessionError(f"could not reach a Dask scheduler at {address!r} ({exc}); check "
                             "the address (e.g. tcp://127.0.0.1:8786) and that it runs") from None
        with self._lock:
            self._client, self.address = client, address

    def client(self) -> Any:
        """The client dask cells use now; a SessionError saying how to get one if there is none."""
        with self._lock:
            if self._client is not None:
                return self._client
        distributed = _distributed()
        try:
            return distributed.get_client()
        except ValueError:
            raise SessionError(
                "a --backend dask cell needs a Dask cluster: create one in the notebook "
                "(from distributed import Client; client = Client()) or point the session at "
                "one with %wfy_config --dask ADDRESS"
            ) from None

    def executor(self) -> Executor:
        executor: Executor = self.client().get_executor(pure=False)
        return executor

    def describe(self) -> str | None:
        """A %wfy_status line, or None when nothing was configured."""
        if self.address is None:
            return None
        return f"dask: {self.address}"

    def close(self) -> None:
        self.configure(None)
