"""One ``%%task`` cell: name and options checked, source compiled, identity hashed, body run."""

from __future__ import annotations

import ast
import hashlib
import inspect
import keyword
import linecache
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..validation import did_you_mean
from ._exceptions import SessionError

__all__ = [
    "BACKEND_CHOICES",
    "CellTask",
    "cell_version",
    "check_name",
    "compile_cell",
    "effective_version",
    "exec_async",
    "exec_sync",
    "referenced_names",
    "register_source",
    "resolve_backend",
    "to_python",
]

BACKEND_CHOICES: tuple[str, ...] = ("thread", "asyncio", "process", "dask")

_CO_COROUTINE = inspect.CO_COROUTINE


def check_name(name: str, what: str = "task name") -> str:
    """Return ``name`` if it can be bound in the namespace; otherwise a SessionError saying why."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        suggestion = "".join(c if c.isalnum() or c == "_" else "_" for c in str(name)) or "result"
        if suggestion[0].isdigit() or keyword.iskeyword(suggestion):
            suggestion = f"t_{suggestion}"
        raise SessionError(
            f"{what} {name!r} is not a valid Python identifier, and results are stored in the "
            f"namespace under the task's name; use something like {suggestion!r}"
        )
    return name


def cell_version(source: str) -> str:
    """A hash of a cell's source, the code part of the task's identity.

    Line endings and trailing blank space are normalised so a re-saved notebook does not
    invalidate its checkpoint; anything else (comments included) counts as a change.
    """
    text = "\n".join(line.rstrip() for line in source.replace("\r\n", "\n").split("\n")).strip()
    return hashlib.sha256(b"wfy-cell-v1\0" + text.encode("utf-8")).hexdigest()[:32]


def to_python(shell: Any, source: str) -> str:
    """The cell as plain Python: IPython syntax (``!cmd``, ``%magic``) turned into calls."""
    if shell is None:
        return source
    # The input transformers only: shell.transform_cell would also apply automagic, so a
    # one-line body such as `load * 2` would turn into a call of the %load magic.
    code: str = shell.input_transformer_manager.transform_cell(source)
    return code


def compile_cell(
    code: str, filename: str
) -> tuple[types.CodeType, types.CodeType | None, bool]:
    """Compile a cell as (statements, last expression or None, uses top-level await).

    The last statement is compiled in ``eval`` mode when it is an expression, so its value is
    the task's result, as a notebook cell's last expression is its output.
    """
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    tree = ast.parse(code, filename=filename, mode="exec")
    last: types.CodeType | None = None
    final = tree.body[-1] if tree.body else None
    if isinstance(final, ast.Expr):
        tree.body.pop()
        expr = ast.Expression(body=final.value)
        last = compile(expr, filename, "eval", flags=flags, dont_inherit=True)
    body = compile(tree, filename, "exec", flags=flags, dont_inherit=True)
    is_async = bool(body.co_flags & _CO_COROUTINE) or bool(
        last is not None and last.co_flags & _CO_COROUTINE
    )
    return body, last, is_async


def register_source(filename: str, code: str) -> None:
    """Make ``code`` the source linecache shows for ``filename``."""
    # mtime None keeps linecache.checkcache() from evicting it: tracebacks show the cell lines.
    lines = code.splitlines(keepends=True)
    linecache.cache[filename] = (len(code), None, lines, filename)


def referenced_names(*codes: types.CodeType | None) -> set[str]:
    """Global names a cell may read: co_names of its code and of every nested code object."""
    names: set[str] = set()
    stack = [c for c in codes if c is not None]
    while stack:
        co = stack.pop()
        names.update(co.co_names)
        stack.extend(c for c in co.co_consts if isinstance(c, types.CodeType))
    return names


def resolve_backend(name: str, backend: str | None, is_async: bool) -> str:
    """The backend task ``name`` runs on: the one asked for, or the default for its code."""
    if backend is None:
        return "asyncio" if is_async else "thread"
    if backend not in BACKEND_CHOICES:
        raise SessionError(
            f"unknown --backend {backend!r}{did_you_mean(backend, BACKEND_CHOICES)}; use one of "
            f"{', '.join(BACKEND_CHOICES)}"
        )
    if is_async and backend != "asyncio":
        raise SessionError(
            f"task {name!r} uses top-level await, which needs --backend asyncio "
            f"(got {backend!r}); drop the await or the --backend option"
        )
    if backend in ("process", "dask"):
        try:
            import cloudpickle  # noqa: F401
        except ImportError as exc:  # pragma: no cover - cloudpickle is a dependency
            raise SessionError(
                f"--backend {backend} needs cloudpickle to ship the cell to a worker: "
                "`pip install cloudpickle`, or use --backend thread"
            ) from exc
    return backend


@dataclass(frozen=True)
class CellTask:
    """One ``%%task`` definition: everything needed to (re)build its node for a run."""

    name: str
    source: str
    code: str
    after: tuple[str, ...]
    retries: int
    timeout: float | None
    backend: str
    version: str
    is_async: bool
    filename: str
    body: types.CodeType = field(repr=False, compare=False)
    last: types.CodeType | None = field(repr=False, compare=False)
    #: Global names the cell may read (its code's co_names, nested code included).
    refs: tuple[str, ...] = field(default=(), repr=False, compare=False)
    #: ``%%task NAME --cache``: its result goes to (and comes from) the engine's disk cache.
    cache: bool = False


_PLAIN = (type(None), bool, int, float, complex, str, bytes)


def _code_fingerprint(obj: object) -> str:
    try:
        from ._fingerprint import code_fingerprint

        return code_fingerprint(obj)
    except Exception:  # an exotic object: fall back to what it is, not how it works
        return f"{type(obj).__qualname__}:{getattr(obj, '__qualname__', '')}"


def effective_version(cell: CellTask, ns: Mapping[str, Any]) -> str:
    """The cell's source hash, extended by what it uses from the notebook namespace ``ns``.

    Functions and classes defined in the notebook (module ``__main__``) contribute the
    fingerprint of their code (independent of cell numbers and the kernel's pid), and plain
    constants their value, so editing a helper cell or ``THRESHOLD = 5`` invalidates the
    tasks that use them. Upstream results are left out: parents' fingerprints cover them.
    """
    parts: list[str] = []
    for name in cell.refs:
        if name not in ns:
            continue
        obj = ns[name]
        if type(obj) in _PLAIN:
            parts.append(f"{name}={type(obj).__name__}:{obj!r}")
        elif (isinstance(obj, type) or inspect.isfunction(obj)) and getattr(
            obj, "__module__", None
        ) == "__main__":
            parts.append(f"{name}=code:{_code_fingerprint(obj)}")
    if not parts:
        return cell.version
    digest = hashlib.sha256(cell.version.encode())
    for part in parts:
        digest.update(b"\0" + part.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]


def exec_sync(cell: CellTask, g: dict[str, Any]) -> Any:
    """Run a cell without top-level await in the namespace ``g``; return its last value."""
    exec(cell.body, g)
    return None if cell.last is None else eval(cell.last, g)


async def exec_async(cell: CellTask, g: dict[str, Any]) -> Any:
    """Run a cell that may await in the namespace ``g``; return its last value."""
    # With PyCF_ALLOW_TOP_LEVEL_AWAIT, code that awaits evaluates to a coroutine to await;
    # code that does not is evaluated directly (and may itself return a coroutine object).
    out = eval(cell.body, g)
    if cell.body.co_flags & _CO_COROUTINE:
        await out
    if cell.last is None:
        return None
    value = eval(cell.last, g)
    if cell.last.co_flags & _CO_COROUTINE:
        value = await value
    return value
