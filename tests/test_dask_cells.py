"""``%%task NAME --backend dask`` through real kernels, on a real LocalCluster.

The cluster (two single-threaded worker processes) runs in the test process and serves every
test; kernels reach it by address, as a notebook reaches a shared cluster. Cells that must fail
once talk to the test through marker files. Waits have hang guards only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kernel_utils import WIDGET_MIME, Kernel

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    local = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        silence_logs=logging.CRITICAL)
    try:
        yield local
    finally:
        local.close()


CELLS = """
    %%task data
    list(range(10))
""", """
    %%task total --after data --backend dask
    import os
    (sum(scale(v) for v in data), os.getpid())
"""


def _define(kernel: Kernel) -> None:
    kernel.execute("def scale(v):\n    return 2 * v")  # a notebook function: goes by value
    for cell in CELLS:
        kernel.execute(cell)


def test_dask_cells_run_on_the_notebooks_client_with_retries_and_timeouts(
    cluster: Any, tmp_path: Path
) -> None:
    with Kernel(cwd=tmp_path) as k:
        k.execute("%load_ext pyworkflowy_nb\n%wfy_config --no-checkpoint\n"
                  "from pyworkflowy_nb.notebook import get_session")
        # No cluster known yet: the run says how to get one.
        k.execute("%%task lonely --backend dask\n1")
        res = k.execute("%wfy_run lonely --no-widget", check=False)
        assert "needs a Dask cluster" in res.stderr
        k.execute("%wfy_reset lonely")
        k.execute(f"from distributed import Client\nclient = Client({cluster.scheduler_address!r})")
        _define(k)
        res = k.execute("%wfy_run")
        assert [m for m in res.of_type("display_data") if WIDGET_MIME in m["content"]["data"]]
        update = next(m for m in res.messages if m["msg_type"] == "update_display_data")
        assert 'data-status="completed"' in update["content"]["data"]["text/html"]
        value, pid = k.value("total")
        assert value == 90
        assert pid != k.pid  # it ran in a Dask worker process, not in the kernel
        assert pid in k.value("list(client.run(__import__('os').getpid).values())")
        assert "dask" in k.execute("%wfy_status").stdout

        marker = tmp_path / "failed-once"
        k.execute(f"""
            %%task flaky --backend dask --retries 2
            import os
            if not os.path.exists({str(marker)!r}):
                open({str(marker)!r}, "w").close()
                raise RuntimeError("the first attempt fails")
            "second attempt"
        """)
        k.execute("%wfy_run flaky --no-widget")
        assert k.value("flaky") == "second attempt"
        assert k.value("get_session().results['flaky'].attempts") == 2

        k.execute("""
            %%task slow --backend dask --timeout 0.5
            import time
            time.sleep(3)
        """)
        res = k.execute("%wfy_run slow --no-widget", check=False)
        assert "TaskTimeoutError" in res.stderr or "timed out" in res.stderr
        assert k.value("get_session().results['slow'].status.value") == "failed"

        k.execute("""
            %%task broken --backend dask
            raise ValueError("from the worker")
        """)
        res = k.execute("%wfy_run broken --no-widget", check=False)
        assert "ValueError: from the worker" in res.stderr
        k.execute("client.close()")


def test_a_configured_address_and_restore_after_a_restart(cluster: Any, tmp_path: Path) -> None:
    env = {"PYWORKFLOWY_NB_KEY_FILE": str(tmp_path / "key")}  # both kernels sign alike
    address = cluster.scheduler_address
    with Kernel(cwd=tmp_path, env=env) as first:
        first.execute("%load_ext pyworkflowy_nb")
        out = first.execute(f"%wfy_config --dask {address}").stdout
        assert f"dask: {address}" in out
        _define(first)
        first.execute("%wfy_run --no-widget")
        value, first_pid = first.value("total")
        assert value == 90
    with Kernel(cwd=tmp_path, env=env) as second:  # a restarted kernel, same notebook folder
        second.execute("%load_ext pyworkflowy_nb")
        second.execute(f"%wfy_config --dask {address}")
        _define(second)
        # Defining the cells again brings the stored results back; nothing runs.
        assert second.value("total") == [90, first_pid]
        res = second.execute("%wfy_run --no-widget")
        assert "2 restored" in res.stdout
    bad = Kernel(cwd=tmp_path, env=env)
    try:
        bad.execute("%load_ext pyworkflowy_nb")
        res = bad.execute("%wfy_config --dask tcp://127.0.0.1:1", check=False)
        assert res.error is not None and "could not reach a Dask scheduler" in res.error["evalue"]
    finally:
        bad.close()
    assert os.path.isdir(tmp_path / ".wfy")
