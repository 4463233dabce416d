"""The result cache: stores, keys, and the code fingerprint that keys a task's code.

``@task(cache=True, cache_ttl=..., cache_key_fn=...)`` (auto_workflow's option names) makes a
completed attempt's value reusable: the next call with the same key completes from the store
without running, as a *cache hit* (``handle.cached``, a ``cached`` event, ``TaskResult.cached``).

Design decisions
----------------
* **Stores.** :class:`MemoryStore` (per process, an ``OrderedDict`` in LRU order) and
  :class:`DiskStore`, one SQLite file from the standard library under the user's cache folder
  (``$PYWORKFLOWY_NB_CACHE_DIR``, else ``$XDG_CACHE_HOME/pyworkflowy_nb``, else
  ``~/.cache/pyworkflowy_nb``). SQLite gives atomic writes, WAL mode lets processes read while
  one writes, and a busy timeout makes concurrent writers queue instead of failing; a folder
  of files would need all of that by hand. ``TaskRunner(cache=...)`` picks the store:
  ``"memory"`` (the default: one store shared by the process's runners, so a notebook's
  re-runs hit), ``"disk"``, a store instance, or ``False`` to ignore ``cache=True``.
* **Bounded.** Both stores have a size bound (entries for memory, bytes for disk) and evict
  the least recently *used* entries first; a hit refreshes its entry's last use.
* **Signed.** Disk values are pickles, and unpickling runs code, so each row carries an
  HMAC-SHA256 of its key and bytes under the per-user key (:mod:`._keys`, the same one that
  signs checkpoints). A row whose signature does not match is refused *before* unpickling,
  deleted, logged and counted as a miss.
* **Time.** Each store takes a ``clock`` (default ``time.time``): TTLs are tested by moving it.
* **Key.** By default the task's name, its version, a fingerprint of its code and its
  arguments (the *values*, after handle arguments were resolved). The code fingerprint hashes
  the code object (bytecode, constants with nested code recursively, names, argument counts)
  and the defaults, never the file name or line numbers, so a function defined in a notebook
  or in ``__main__`` keys the same after a restart and differently once its body changes.
  Helpers it calls are not followed: change ``version=`` (or use ``cache_key_fn``) when
  behaviour moved into them. ``cache_key_fn(fn, args, kwargs) -> str`` replaces the
  fingerprint and arguments (the task name still prefixes it, so two tasks never collide).
* **Misses are cheap when the cache is unused**: a task without ``cache=True`` costs the
  dispatcher one attribute test per launch and per settle.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import sqlite3
import threading
import time
import types
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ._identity import encode_args
from ._keys import load_or_create_key, sign_bytes, signatures_match, user_path

__all__ = ["CACHE_DIR_ENV", "CacheStore", "DiskStore", "MemoryStore", "cache_key",
           "code_fingerprint", "default_cache_dir", "store_for"]

logger = logging.getLogger("pyworkflowy_nb")

CACHE_DIR_ENV = "PYWORKFLOWY_NB_CACHE_DIR"
_MISS: Any = object()


class CacheStore(Protocol):
    """What the dispatcher asks of a store: ``get`` (``MISS`` when absent) and ``put``."""

    MISS: Any

    def get(self, key: str) -> Any: ...

    def put(self, key: str, value: Any, ttl: float | None) -> None: ...


class MemoryStore:
    """Values kept in this process, at most ``max_entries`` of them, least recently used out
    first."""

    MISS: Any = _MISS

    def __init__(self, max_entries: int = 4096, *,
                 clock: Callable[[], float] = time.time) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"max_entries must be a positive integer, got {max_entries!r}")
        self.max_entries = max_entries
        self.clock = clock
        self._lock = threading.Lock()
        self._data: OrderedDict[str, tuple[Any, float | None]] = OrderedDict()

    def get(self, key: str) -> Any:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return _MISS
            value, expires = entry
            if expires is not None and self.clock() >= expires:
                del self._data[key]
                return _MISS
            self._data.move_to_end(key)
            return value

    def put(self, key: str, value: Any, ttl: float | None) -> None:
        expires = None if ttl is None else self.clock() + ttl
        with self._lock:
            self._data[key] = (value, expires)
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


def default_cache_dir() -> Path:
    """``$PYWORKFLOWY_NB_CACHE_DIR``, else ``$XDG_CACHE_HOME/pyworkflowy_nb``, else
    ``~/.cache/pyworkflowy_nb``."""
    return user_path(CACHE_DIR_ENV, "XDG_CACHE_HOME", ".cache", "")


class DiskStore:
    """Signed pickles in one SQLite file, shared safely between processes, at most
    ``max_bytes`` of values (least recently used out first)."""

    MISS: Any = _MISS

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 max_bytes: int = 256 * 1024 * 1024, clock: Callable[[], float] = time.time,
                 key_file: str | os.PathLike[str] | None = None) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
        self.path = Path(path) if path is not None else default_cache_dir() / "results.sqlite"
        if self.path.is_dir():
            raise ValueError(f"DiskStore path {str(self.path)!r} is a directory: name a file "
                             f"inside it, e.g. {str(self.path / 'results.sqlite')!r}")
        self.max_bytes = max_bytes
        self.clock = clock
        self._key = load_or_create_key(key_file)
        self._local = threading.local()  # one connection per thread: sqlite3's rule
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value BLOB "
                       "NOT NULL, mac TEXT NOT NULL, size INTEGER NOT NULL, expires REAL, "
                       "used REAL NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS entries_used ON entries (used)")

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    def _mac(self, key: str, blob: bytes) -> str:
        return sign_bytes(self._key, key.encode() + b"\0" + blob)

    def get(self, key: str) -> Any:
        db = self._db()
        row = db.execute("SELECT value, mac, expires FROM entries WHERE key = ?",
                         (key,)).fetchone()
        if row is None:
            return _MISS
        blob, mac, expires = row
        now = self.clock()
        if not signatures_match(self._key, key.encode() + b"\0" + blob, mac):
            logger.warning("cache entry %s in %s has a bad signature: refused, not "
                           "unpickled, and removed", key, self.path)
            db.execute("DELETE FROM entries WHERE key = ?", (key,))
            return _MISS
        if expires is not None and now >= expires:
            db.execute("DELETE FROM entries WHERE key = ?", (key,))
            return _MISS
        db.execute("UPDATE entries SET used = ? WHERE key = ?", (now, key))
        return pickle.loads(blob)

    def put(self, key: str, value: Any, ttl: float | None) -> None:
        blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        now = self.clock()
        expires = None if ttl is None else now + ttl
        db = self._db()
        db.execute("BEGIN IMMEDIATE")  # one writer at a time across processes
        try:
            db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                       (key, blob, self._mac(key, blob), len(blob), expires, now))
            total = db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0]
            if total > self.max_bytes:
                self._evict(db, total)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _evict(self, db: sqlite3.Connection, total: int) -> None:
        for key, size in db.execute("SELECT key, size FROM entries ORDER BY used").fetchall():
            if total <= self.max_bytes:
                break
            db.execute("DELETE FROM entries WHERE key = ?", (key,))
            total -= size

    def keys(self) -> list[str]:
        return [k for (k,) in self._db().execute("SELECT key FROM entries ORDER BY used")]

    def __len__(self) -> int:
        count: int = self._db().execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        return count


_default_memory: MemoryStore | None = None
_default_lock = threading.Lock()


def store_for(option: object) -> CacheStore | None:
    """The store ``TaskRunner(cache=option)`` means; None for ``False``."""
    global _default_memory
    if option is False:
        return None
    if option is None or option == "memory":
        with _default_lock:
            if _default_memory is None:
                _default_memory = MemoryStore()
            return _default_memory
    if option == "disk":
        return DiskStore()
    if callable(getattr(option, "get", None)) and callable(getattr(option, "put", None)) \
            and hasattr(option, "MISS"):
        store: CacheStore = option  # type: ignore[assignment]
        return store
    raise TypeError(f"cache must be 'memory', 'disk', False or a store (MemoryStore, "
                    f"DiskStore, or one with get/put/MISS), got {option!r}")


# -- keys ----------------------------------------------------------------------------------------
def _feed_code(h: Any, code: types.CodeType) -> None:
    h.update(b"C%d,%d,%d,%d|" % (code.co_argcount, code.co_posonlyargcount,
                                 code.co_kwonlyargcount, code.co_flags))
    h.update(code.co_code)
    for part in (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars):
        h.update(repr(part).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(h, const)  # nested functions, lambdas, comprehensions count
        else:
            h.update(b"K" + repr(const).encode())


def code_fingerprint(fn: Callable[..., Any]) -> str:
    """A hash of what ``fn`` does: its code object (recursively) and defaults; never its file
    name or line numbers, so the same source keys the same in every process."""
    target: Any = getattr(fn, "__func__", fn)  # bound methods: the class form's run()
    code = getattr(target, "__code__", None)
    h = hashlib.blake2b(digest_size=16)
    if isinstance(code, types.CodeType):
        _feed_code(h, code)
        h.update(repr(getattr(target, "__defaults__", None)).encode())
        h.update(repr(getattr(target, "__kwdefaults__", None)).encode())
    else:  # builtins, partials, callable objects: their identity is where they live
        h.update(f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"
                 .encode())
    return h.hexdigest()


_SCALARS = (int, float, str, bool, type(None))


def cache_key(name: str, prefix: str, fn: Callable[..., Any], args: tuple[Any, ...],
              kwargs: dict[str, Any], key_fn: Callable[..., Any] | None) -> str:
    """The store key of one call (see the module docstring); ``prefix`` is
    :func:`key_prefix` of the task.

    Scalar arguments go in by ``repr``, which tells ``1``, ``1.0`` and ``True`` apart and
    costs far less than encoding and hashing them: that keeps a hit cheaper than a run.
    """
    if key_fn is not None:
        custom = key_fn(fn, args, kwargs)
        if not isinstance(custom, str):
            raise TypeError(f"cache_key_fn for {name!r} must return a str, got {custom!r}")
        return f"{name}:{custom}"
    if not kwargs:
        for a in args:
            if type(a) not in _SCALARS:
                break
        else:
            return f"{prefix}:{args!r}"
    digest = hashlib.blake2b(encode_args(args, kwargs), digest_size=16)
    return f"{prefix}:#{digest.hexdigest()}"


def key_prefix(name: str, version: str | None, code: str) -> str:
    """What every key of one task starts with: its name, version and code fingerprint."""
    return f"{name}:{version or ''}:{code}"
