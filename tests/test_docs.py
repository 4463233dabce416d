"""The documentation builds cleanly and every Python sample in it runs.

Two checks live here:

* ``mkdocs build --strict`` on ``docs/mkdocs.yml``: a broken link, a missing page in the nav or a
  docstring mkdocstrings cannot render fails the build, so it fails the test.
* Every fenced ```` ```python ```` block in ``docs/**/*.md`` and ``README.md`` is executed. No block
  is skipped. Plain blocks of one page run in order in one fresh interpreter (they share a
  namespace, so a page can build on its earlier samples). A block preceded by the marker line
  ``<!-- kernel -->`` needs IPython (magics, top-level ``await``, ``display``): the kernel blocks
  of a page become the cells of one notebook that is run in a real Jupyter kernel with nbclient.

Each sample runs in its own temporary directory, so files it writes (CSV files, checkpoints)
never land in the repository.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
KERNEL_MARKER = "<!-- kernel -->"

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[A-Za-z0-9_+-]*)[^`]*$")


@dataclasses.dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line number of the first line of code (just after the fence)
    source: str
    kernel: bool


def extract_blocks(text: str, path: Path) -> list[Block]:
    """Return the python blocks of a markdown text, in order.

    Fences may be indented (inside admonitions or lists); the indentation is removed. An unclosed
    fence is an error rather than a silently dropped sample.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE_OPEN.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, lang = match.group("indent"), match.group("lang").lower()
        start = i + 1
        end = start
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{path}:{i + 1}: code fence opened here is never closed")
        if lang in ("python", "py"):
            previous = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
            body = "\n".join(ln[len(indent) :] if ln.startswith(indent) else ln
                             for ln in lines[start:end])
            blocks.append(
                Block(path, start + 1, textwrap.dedent(body) + "\n", previous == KERNEL_MARKER)
            )
        i = end + 1
    return blocks


def _pages() -> list[Path]:
    pages = sorted(DOCS.rglob("*.md"))
    readme = ROOT / "README.md"
    if readme.exists():
        pages.append(readme)
    return pages


def _collect() -> list[tuple[Path, bool, list[Block]]]:
    cases: list[tuple[Path, bool, list[Block]]] = []
    for page in _pages():
        blocks = extract_blocks(page.read_text(encoding="utf-8"), page)
        for kernel in (False, True):
            chosen = [b for b in blocks if b.kernel is kernel]
            if chosen:
                cases.append((page, kernel, chosen))
    return cases


CASES = _collect()


def _case_id(case: tuple[Path, bool, list[Block]]) -> str:
    page, kernel, _ = case
    return f"{page.relative_to(ROOT)}::{'kernel' if kernel else 'python'}"


# The driver runs each block as if it were written at its own line of the markdown file, so a
# traceback points at the real line in the docs. It executes in __main__'s namespace, which keeps
# functions defined in a sample picklable for the process backend (they live in __main__).
_DRIVER = """
import json, sys, __main__
for block in json.load(open(sys.argv[1])):
    code = compile("\\n" * (block["line"] - 1) + block["source"], block["path"], "exec")
    exec(code, __main__.__dict__)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    return env


def _run_plain(blocks: list[Block], workdir: Path) -> None:
    spec = workdir / "blocks.json"
    spec.write_text(
        json.dumps([{"path": str(b.path), "line": b.line, "source": b.source} for b in blocks])
    )
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(spec)],
        cwd=workdir,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"a docs sample failed (exit {proc.returncode})\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )


def _run_kernel(blocks: list[Block], workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(b.source.rstrip("\n")) for b in blocks]
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])
    client = nbclient.NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        index = next(
            (i for i, cell in enumerate(nb.cells)
             if any(o.get("output_type") == "error" for o in cell.get("outputs", []))),
            None,
        )
        where = f"{blocks[index].path}:{blocks[index].line}" if index is not None else "?"
        pytest.fail(f"kernel sample at {where} failed:\n{exc}")


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_docs_sample_runs(
    case: tuple[Path, bool, list[Block]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _page, kernel, blocks = case
    if kernel:
        pytest.importorskip("ipykernel")
        _run_kernel(blocks, tmp_path, monkeypatch)
    else:
        _run_plain(blocks, tmp_path)


def test_docs_have_samples() -> None:
    # Guards against the extractor silently finding nothing (e.g. after a change of fence style).
    plain = sum(len(b) for _, k, b in CASES if not k)
    kernel = sum(len(b) for _, k, b in CASES if k)
    assert plain >= 10, f"only {plain} plain python samples found in docs/"
    assert kernel >= 3, f"only {kernel} kernel samples found in docs/"


def test_extract_blocks_handles_markers_indent_and_other_languages() -> None:
    text = textwrap.dedent(
        """\
        # Title

        ```python
        x = 1
        ```

        <!-- kernel -->

        ```python
        %load_ext something
        ```

        ```bash
        echo not python
        ```

        !!! note
            ```py
            y = 2
            ```
        """
    )
    blocks = extract_blocks(text, Path("page.md"))
    assert [(b.line, b.source, b.kernel) for b in blocks] == [
        (4, "x = 1\n", False),
        (10, "%load_ext something\n", True),
        (19, "y = 2\n", False),
    ]


def test_extract_blocks_rejects_unclosed_fence() -> None:
    with pytest.raises(ValueError, match="never closed"):
        extract_blocks("```python\nx = 1\n", Path("bad.md"))


def test_docs_build_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "-f", str(DOCS / "mkdocs.yml"), "-d", str(site)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    # The API pages must really contain rendered docstrings, not an empty shell.
    api = {
        "api/engine/index.html": ["TaskRunner", "TaskHandle", "RunResults"],
        "api/exceptions/index.html": ["TaskTimeoutError", "CheckpointError"],
        "api/schedule/index.html": ["Scheduler"],
        "api/notebook/index.html": ["RunnerWidget"],
    }
    for page, names in api.items():
        html = (site / page).read_text(encoding="utf-8")
        missing = [n for n in names if n not in html]
        assert not missing, f"{page} does not document {missing}"
        # docs/hooks.py turns reST roles into plain inline code; none may leak through.
        leaked = re.findall(r":(?:class|func|meth|mod|attr|exc):<code>", html)
        assert not leaked, f"{page} shows raw reST roles: {leaked[:3]}"
