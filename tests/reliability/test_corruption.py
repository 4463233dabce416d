"""Corrupted and hostile checkpoints: resume refuses them clearly or restores them correctly.

For each checkpoint kind (JSON by ``checkpoint_path=``, ``PickleCheckpointer``, the notebook's
``CloudpickleCheckpointer``) three pristine checkpoints of a small DAG (corruption_dag.py) are
written once, by runs on one runner so each spans several saves: one closed cleanly, one left
by a process SIGKILLed right after its last ``run()`` returned, one by a process SIGKILLed
inside its third run (the last two leave whatever a journal holds before compaction on disk).
Every case copies one, applies one mutation and resumes it: through the path
(``TaskRunner.resume(path)``) or, in every other case, through an explicit checkpointer of the
kind that wrote it. The signing key of the pickle kinds lives in a temp folder
(``PYWORKFLOWY_NB_KEY_FILE``), never in the real home.

The file layout is not assumed: a case discovers the files by walking ``<path>`` and
``<path>.d/``, and edits JSON wherever a file parses as JSON (whole file or one document per
line). After editing a file in ``<path>.d/`` the harness also replaces that file's old SHA-256
by the new one wherever it appears in the other JSON files, as an attacker who can write the
folder (but has not got the signing key) would, so content checks are reached and not only
the digest check.

What is generated: the GENERATED cases per pristine checkpoint are drawn from one seed
(``WFY_CORRUPTION_SEED``, default below). The family is drawn uniformly from FAMILIES
(truncation, bit flips, removal, renaming, one file replaced by another, JSON field edits
such as codec, version or format, record fields of wrong types, path escapes, symlinks,
FIFOs, directories, nesting bombs, huge sparse files, planted pickles, stray files, emptied
files); the file, offsets and hostile values then come from a per-case random generator. The
TARGETED cases are the exact reproductions listed in issue 9. A case id names its kind, family
and number; the same seed replays the same mutation on the same file layout. A record's
``value`` is never edited: in an unsigned JSON file an edited value is indistinguishable from
a real one, so no implementation could refuse it.

The oracle, applied to every case:

* nothing may execute: a planted pickle's ``__reduce__`` creates a marker file, which must never
  exist afterwards (checked after every case, whatever the outcome);
* resume, the re-submission of the DAG and the run must end within HANG_GUARD seconds (they
  run in a thread; a FIFO left blocking is then opened for writing to release it);
* the process's address space is capped at its current size + 1.5 GiB during the case, so
  reading /dev/zero or a 2 GB sparse file into memory shows up as MemoryError, not a dead box;
* the outcome is either

  - a ``CheckpointError`` whose message contains the checkpoint path the user gave, whose
    ``.path`` is that path or a file inside ``<path>.d/`` (never a file an attacker pointed
    at), and which does not tell the user to delete a planted path; or
  - a correct resume (never one that needed to follow a symlink out of ``<path>.d/``: when
    an essential file or the folder became a link to an identical copy outside, restoring
    everything proves the link was followed): every handle restored from the checkpoint
    holds the value the original run produced, running the re-submitted DAG completes every
    task with the original values, and one more resume afterwards restores every task (the
    resumed runner wrote a sound checkpoint over the damaged one). Restoring fewer tasks
    than the pristine checkpoint is allowed (a journal may lose a torn tail), but restoring
    *none* while the pristine checkpoint restores some is a silent fresh start, a failure,
    except when

    - every file the mutation touched is *non-essential*: removing that file alone from the
      pristine checkpoint still restores every task (measured per kind, on the pristine
      checkpoint, so the oracle follows whatever layout the implementation writes), or the
      file was added by the mutation; or
    - the mutation only truncated files inside ``<path>.d/``: an append-only journal cut short
      is what a power loss can leave, and losing what was in it is then a legitimate
      outcome. The file at ``<path>`` itself is always replaced atomically, so a truncated
      one is corruption and must not read as "nothing there".

* any other exception type (ValueError, RecursionError, MemoryError, OSError...) is a failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from corruption_dag import KINDS, PARENTS, open_kind, submit_all, value_of, write
from harness import package_env

from pyworkflowy_nb import TaskRunner
from pyworkflowy_nb.exceptions import CheckpointError

SEED = int(os.environ.get("WFY_CORRUPTION_SEED", "9091"))
GENERATED = 40  # per pristine checkpoint: 3 kinds x 3 variants
VARIANTS = ("closed", "killed", "crashed")  # how the writing process ended (corruption_dag.py)
HANG_GUARD = 5.0  # seconds; a case takes milliseconds: only reached when something hangs
HEADROOM = 3 << 29  # 1.5 GiB of address space above the current size during a case
HUGE = 2 << 30  # a 2 GiB sparse file
FAMILIES = ("truncate", "bitflip", "remove", "rename", "substitute", "json_field", "record_type",
            "path_escape", "symlink", "fifo", "directory", "bomb", "huge", "plant_pickle",
            "stray", "empty")
NESTING = 100_000


# -- hostile payloads -----------------------------------------------------------------------------

class Plant:
    """Unpickling this creates ``marker``: proof that loading ran code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str, str]]:
        return (open, (self.marker, "w"))


def planted_pickle(marker: Path) -> bytes:
    return pickle.dumps([Plant(str(marker))], protocol=pickle.HIGHEST_PROTOCOL)


WRONG_FIELD_VALUES: dict[str, list[Any]] = {
    "attempts": ["abc", -1, 1e308, [], {}, None, True, 10**30],
    "status": ["bogus", None, 7, [], "COMPLETED"],
    "key": [5, None, [], {}, ""],
    "fingerprint": [None, 5, [], "f" * 10],
    "started_at": ["yesterday", [], {}, -1e308],
    "finished_at": ["x", [], {}],
    "name": [None, 3, []],
    "error": [5, {}],
}
HOSTILE_VALUES: list[Any] = [
    None, True, 0, -1, 2, 1.5, 1e308, "", "abc", "pickle", "json", "cloudpickle", "marshal",
    [], {}, [[]], {"a": {}}, "../../x", "/etc/passwd", "\x00", "a" * 5000, 10**30,
]
CODECS = ["pickle", "json", "cloudpickle", "marshal", "", None, 5, "PICKLE"]
VERSIONS = [0, 2, -1, "1", 1.5, None, True, 10**30, []]
RECORD_SHAPES = [b"{}", b"[]", b"[{}]", b"[1]", b"null", b"\"x\"", b"[[]]", b"[null]", b"0",
                 b"{\"key\": \"a\"}", b"[{\"key\": null}]"]


# -- the pristine checkpoints ---------------------------------------------------------------------

@dataclass
class Base:
    kind: str
    variant: str  # see VARIANTS
    root: Path  # folder holding <name> and <name>.d
    name: str
    values: dict[int, Any]  # what the original run produced
    restored: int  # how many a pristine resume restores
    non_essential: set[str] = field(default_factory=set)  # relative names

    def files(self) -> list[str]:
        return relative_files(self.root, self.name)


def relative_files(root: Path, name: str) -> list[str]:
    """``name`` and every regular file below ``name.d``, relative to ``root``."""
    found = [name] if (root / name).is_file() else []
    parts = root / f"{name}.d"
    if parts.is_dir():
        for folder, _, files in os.walk(parts):
            found += sorted(os.path.relpath(os.path.join(folder, f), root) for f in files)
    return found


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point the per-user signing key at a temp file, never at the real home."""
    from pyworkflowy_nb._keys import KEY_ENV_VAR

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV_VAR, str(tmp_path_factory.mktemp("key") / "checkpoint.key"))
        yield


def write_base(kind: str, root: Path, variant: str) -> Base:
    root.mkdir(parents=True)
    path = root / "state.ckpt"
    if variant != "closed":
        proc = subprocess.run(
            [sys.executable, "-c", "import sys, corruption_dag; "
             "corruption_dag.write_and_die(*sys.argv[1:])", kind, str(path), variant],
            env=package_env(), capture_output=True, text=True, timeout=120,
            cwd=root)  # not the project folder: ``-c`` puts the current folder on sys.path
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        values = {i: value_of(i) for i in PARENTS}
    else:
        runner, handles = write(kind, path)
        with runner:
            pass  # a clean close
        values = {i: h.result() for i, h in handles.items()}
        assert values == {i: value_of(i) for i in PARENTS}
    base = Base(kind, variant, root, path.name, values, count_restored(path))
    for rel in base.files():
        # Which files matter: remove each alone and see whether everything still comes back.
        trial = root.parent / f"{root.name}-without"
        shutil.copytree(root, trial, symlinks=True)
        (trial / rel).unlink()
        try:
            if count_restored(trial / base.name) == base.restored:
                base.non_essential.add(rel)
        except CheckpointError:
            pass
        finally:
            shutil.rmtree(trial)
    return base


def count_restored(path: Path) -> int:
    runner = TaskRunner.resume(path)
    with runner:
        handles = submit_all(runner)
        return sum(1 for h in handles.values() if h.restored)


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory,
          signing_key: None) -> dict[tuple[str, str], Base]:
    top = tmp_path_factory.mktemp("pristine")
    return {(kind, variant): write_base(kind, top / f"{kind}-{variant}", variant)
            for kind in KINDS for variant in VARIANTS}


# -- mutations ------------------------------------------------------------------------------------

@dataclass
class Case:
    kind: str
    variant: str
    family: str
    number: int
    seed: int
    explicit: bool  # resume through an explicit checkpointer instead of the path
    targeted: Callable[[Mutator], None] | None = None

    @property
    def id(self) -> str:
        variant = "" if self.variant == "closed" else f"-{self.variant}"
        return f"{self.kind}{variant}-{self.family}-{self.number}"


def small_regular_file(target: Path) -> bool:
    """Whether the harness may read ``target`` itself (not a link, FIFO or huge file)."""
    return not target.is_symlink() and target.is_file() and target.stat().st_size <= 1 << 22


@dataclass
class Lines:
    """The lines of a file that is not one JSON document, and which of them are JSON."""

    raw: list[bytes]  # every line, with its newline
    at: list[int]  # the index of each JSON document among them


class Mutator:
    """Applies one mutation to a copy of a pristine checkpoint and records what it touched."""

    def __init__(self, base: Base, root: Path, rng: random.Random) -> None:
        self.base = base
        self.root = root
        self.path = root / base.name
        self.parts = root / f"{base.name}.d"
        self.rng = rng
        self.outside = root.parent / "outside"
        self.outside.mkdir(exist_ok=True)
        self.marker = root.parent / "EXECUTED"
        self.touched: set[str] = set()
        self.added: set[str] = set()
        self.only_truncated_parts = True
        self.planted: list[str] = []  # paths an attacker pointed at
        self.fifos: list[Path] = []
        # A file (or the folder) became a symlink to an identical copy outside: a resume
        # that still restores everything must have followed it.
        self.links_out = False
        self.what: list[str] = []

    # helpers
    def files(self) -> list[str]:
        return relative_files(self.root, self.base.name)

    def pick(self, inside: bool | None = None) -> str:
        files = self.files()
        if inside is True:
            files = [f for f in files if f != self.base.name] or files
        return self.rng.choice(files)

    def touch(self, rel: str, truncation: bool = False) -> None:
        self.touched.add(rel)
        if not (truncation and rel != self.base.name):
            self.only_truncated_parts = False

    def note(self, text: str) -> None:
        self.what.append(text)

    def replace_bytes(self, rel: str, data: bytes, fix_digest: bool = True) -> None:
        target = self.root / rel
        old = target.read_bytes() if target.is_file() and not target.is_symlink() else b""
        self.touch(rel)
        if target.is_symlink() or target.exists():
            target.unlink()
        target.write_bytes(data)
        if fix_digest and rel != self.base.name:
            self.fix_digests(old, data)

    def fix_digests(self, old: bytes, new: bytes) -> None:
        """Replace the old SHA-256 of a file by the new one wherever a JSON file quotes it."""
        before = hashlib.sha256(old).hexdigest().encode()
        after = hashlib.sha256(new).hexdigest().encode()
        for rel in self.files():
            target = self.root / rel
            if not small_regular_file(target):
                continue
            data = target.read_bytes()
            if before in data:
                target.write_bytes(data.replace(before, after))
                self.touch(rel)

    def outside_file(self, name: str, data: bytes) -> Path:
        target = self.outside / name
        target.write_bytes(data)
        self.planted.append(str(target))
        return target

    def json_files(self) -> list[tuple[str, list[Any], Lines | None]]:
        """Files holding JSON: (relative name, documents, where the documents are).

        A file that is one JSON document gives one document and None; otherwise every line
        that is a JSON object or array is a document (a journal's header line, say) and the
        Lines record where they sit among the lines that are not JSON.
        """
        found = []
        for rel in self.files():
            target = self.root / rel
            if not small_regular_file(target):
                continue
            data = target.read_bytes()
            try:
                found.append((rel, [json.loads(data)], None))
                continue
            except (ValueError, UnicodeDecodeError):
                pass
            raw = data.splitlines(keepends=True)
            at: list[int] = []
            docs: list[Any] = []
            for n, line in enumerate(raw):
                try:
                    doc = json.loads(line)
                except (ValueError, UnicodeDecodeError):
                    continue
                if isinstance(doc, dict | list):
                    at.append(n)
                    docs.append(doc)
            if docs:
                found.append((rel, docs, Lines(raw, at)))
        return found

    def write_json(self, rel: str, docs: list[Any], lines: Lines | None) -> None:
        if lines is None:
            data = json.dumps(docs[0]).encode()
        else:
            raw = list(lines.raw)
            for n, doc in zip(lines.at, docs, strict=True):
                raw[n] = json.dumps(doc).encode() + (b"\n" if raw[n].endswith(b"\n") else b"")
            data = b"".join(raw)
        self.replace_bytes(rel, data)

    def records_in(self, doc: Any) -> list[dict[str, Any]]:
        """Every dict in ``doc`` that looks like a task record (has "key" and "status")."""
        found: list[dict[str, Any]] = []
        stack = [doc]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                if "key" in item and "status" in item:
                    found.append(item)
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
        return found

    def pickled_records(self) -> list[tuple[str, Any]]:
        """Files of <path>.d that unpickle (we wrote them: the harness trusts its own files)."""
        found = []
        for rel in self.files():
            if rel == self.base.name:
                continue
            try:
                found.append((rel, pickle.loads((self.root / rel).read_bytes())))
            except Exception:
                continue
        return found

    # families ----------------------------------------------------------------------------------
    def truncate(self) -> None:
        rel = self.pick()
        size = (self.root / rel).stat().st_size
        length = self.rng.randrange(size) if size else 0
        os.truncate(self.root / rel, length)
        self.touch(rel, truncation=True)
        self.note(f"truncate {rel} from {size} to {length} bytes")

    def bitflip(self) -> None:
        rel = self.pick()
        data = bytearray((self.root / rel).read_bytes())
        if not data:
            return self.truncate()
        flips = self.rng.choice((1, 1, 2, 8))
        for _ in range(flips):
            at = self.rng.randrange(len(data))
            data[at] ^= 1 << self.rng.randrange(8)
        fix = self.rng.random() < 0.5
        self.replace_bytes(rel, bytes(data), fix_digest=fix)
        self.note(f"flip {flips} bits of {rel} (digest fixed: {fix})")

    def remove_manifest(self) -> None:
        self.path.unlink()
        self.touch(self.base.name)
        self.note(f"remove {self.base.name} (its folder stays)")

    def remove_folder(self) -> None:
        for rel in self.files():
            if rel != self.base.name:
                self.touch(rel)
        shutil.rmtree(self.parts)
        self.note(f"remove the folder {self.parts.name}")

    def remove(self) -> None:
        if self.rng.random() < 0.2 and self.parts.exists():
            return self.remove_folder()
        rel = self.pick()
        if rel == self.base.name:
            return self.remove_manifest()
        (self.root / rel).unlink()
        self.touch(rel)
        self.note(f"remove {rel}")

    def rename(self) -> None:
        rel = self.pick()
        new = str(Path(rel).with_name(f"renamed-{self.rng.randrange(10**6)}{Path(rel).suffix}"))
        os.replace(self.root / rel, self.root / new)
        self.touch(rel)
        self.added.add(new)
        self.note(f"rename {rel} to {new}")

    def substitute(self) -> None:
        files = self.files()
        rel = self.pick(inside=True)
        others = [f for f in files if f != rel]
        if not others:
            return self.bitflip()
        donor = self.rng.choice(others)
        fix = self.rng.random() < 0.5
        self.replace_bytes(rel, (self.root / donor).read_bytes(), fix_digest=fix)
        self.note(f"replace {rel} by a copy of {donor} (digest fixed: {fix})")

    def json_field(self) -> None:
        found = self.json_files()
        if not found:
            return self.bitflip()
        rel, docs, lines = self.rng.choice(found)
        # A record's "value" is the user's data: an unsigned JSON checkpoint cannot tell an
        # edited value from a real one, so the harness never edits values.
        slots = [s for s in _slots(docs) if s[1] != "value"]
        if not slots:
            return self.bitflip()
        container, key, old = self.rng.choice(slots)
        name = key if isinstance(key, str) else ""
        if name == "codec" or (old in ("json", "pickle", "cloudpickle")):
            new = self.rng.choice(CODECS)
        elif name in ("version", "format_version"):
            new = self.rng.choice(VERSIONS)
        else:
            new = self.rng.choice(HOSTILE_VALUES)
        container[key] = new
        self.write_json(rel, docs, lines)
        self.note(f"in {rel} set {key!r} from {_short(old)} to {_short(new)}")

    def record_type(self) -> None:
        if self.rng.random() < 0.3:
            rel = self.pick(inside=True)
            shape = self.rng.choice(RECORD_SHAPES)
            if self.base.kind != "json":
                shape = pickle.dumps(json.loads(shape))
            self.replace_bytes(rel, shape)
            self.note(f"replace {rel} by {shape!r}, digest fixed")
            return
        field_name = self.rng.choice(sorted(WRONG_FIELD_VALUES))
        bad = self.rng.choice(WRONG_FIELD_VALUES[field_name])
        if self.base.kind == "json":
            candidates = [(rel, docs, lines) for rel, docs, lines in self.json_files()
                          if any(self.records_in(d) for d in docs)]
            if not candidates:
                return self.json_field()
            rel, docs, lines = self.rng.choice(candidates)
            recs = [r for d in docs for r in self.records_in(d)]
            self.rng.choice(recs)[field_name] = bad
            self.write_json(rel, docs, lines)
        else:
            pickled = [(rel, obj) for rel, obj in self.pickled_records()
                       if self.records_in(obj)]
            if not pickled:
                return self.bitflip()
            rel, obj = self.rng.choice(pickled)
            self.rng.choice(self.records_in(obj))[field_name] = bad
            self.replace_bytes(rel, pickle.dumps(obj))
        self.note(f"in {rel} set a record's {field_name!r} to {_short(bad)}, digest fixed")

    def escape_targets(self) -> list[str]:
        evil = self.outside_file("evil.bin", self.evil_bytes())
        rel_up = os.path.relpath(self.outside / "evil.bin", self.parts)
        self.planted += ["/etc/passwd", rel_up]
        return ["/etc/passwd", "../../x", rel_up, str(evil), "/", "..", ".", "", "a/b",
                f"{self.parts.name}", "\x00", str(self.path)]

    def evil_bytes(self) -> bytes:
        if self.base.kind == "json":
            # The same records with other values: following the escape would restore them.
            docs = [r for _, d, _ in self.json_files() for r in
                    [x for doc in d for x in self.records_in(doc)]]
            for rec in docs:
                rec["value"] = "planted"
            return json.dumps(docs).encode()
        return planted_pickle(self.marker)

    def path_escape(self) -> None:
        names = {Path(rel).name for rel in self.files() if rel != self.base.name}
        targets = self.escape_targets()
        edited = False
        for rel, docs, lines in self.json_files():
            for container, key, old in list(_slots(docs)):
                if isinstance(old, str) and (old in names or (key in ("file", "name", "path")
                                             and "." in old)):
                    container[key] = self.rng.choice(targets)
                    self.note(f"in {rel} point {key!r}={old!r} at {container[key]!r}")
                    edited = True
            if edited:
                self.write_json(rel, docs, lines)
                return
        self.symlink()

    def symlink(self) -> None:
        choice = self.rng.randrange(6)
        if choice == 5 and self.parts.is_dir():
            # The whole folder becomes a link to a copy outside.
            copy = self.outside / "copy.d"
            shutil.copytree(self.parts, copy)
            for rel in self.files():
                if rel != self.base.name:
                    self.touch(rel)
            shutil.rmtree(self.parts)
            self.parts.symlink_to(copy)
            self.planted.append(str(copy))
            self.links_out = True
            self.note("replace the folder by a symlink to a copy outside")
            return
        rel = self.pick()
        target = self.root / rel
        original = target.read_bytes()
        link: Path | str
        if choice == 0:
            link = "/dev/zero"
        elif choice == 1:
            link = self.outside_file("copy.bin", original)
            self.links_out = True
        elif choice == 2:
            link = self.outside_file("evil.bin", self.evil_bytes())
            self.fix_digests(original, link.read_bytes())
        elif choice == 3:
            link = str(self.outside / "missing")
            self.planted.append(link)
        else:
            link = target.name  # a link to itself: ELOOP
        target.unlink()
        target.symlink_to(link)
        self.touch(rel)
        self.note(f"replace {rel} by a symlink to {link}")

    def fifo(self) -> None:
        rel = self.pick()
        target = self.root / rel
        target.unlink()
        os.mkfifo(target)
        self.fifos.append(target)
        self.touch(rel)
        self.note(f"replace {rel} by a FIFO")

    def directory(self) -> None:
        rel = self.pick()
        (self.root / rel).unlink()
        (self.root / rel).mkdir()
        self.touch(rel)
        self.note(f"replace {rel} by a directory")

    def bomb(self) -> None:
        rel = self.pick()
        opener = self.rng.choice(("[", "{\"a\":"))
        data = (opener * NESTING).encode()
        if rel == self.base.name and self.rng.random() < 0.5:
            try:
                doc = json.loads((self.root / rel).read_text())
            except ValueError:
                doc = None
            if isinstance(doc, dict):
                # A plausible manifest whose one field is the bomb.
                field_name = self.rng.choice(sorted(doc))
                text = json.dumps({**doc, field_name: None}).replace(
                    f'"{field_name}": null', f'"{field_name}": ' + "[" * NESTING)
                data = text.encode()
        self.replace_bytes(rel, data)
        self.note(f"replace {rel} by {NESTING} nested {opener!r}")

    def huge(self) -> None:
        rel = self.pick()
        os.truncate(self.root / rel, HUGE)
        self.touch(rel)
        self.note(f"extend {rel} to a sparse {HUGE >> 30} GiB")

    def plant_pickle(self) -> None:
        rel = self.pick(inside=True)
        self.replace_bytes(rel, planted_pickle(self.marker))
        downgrade = self.rng.random() < 0.7
        if downgrade:
            self.downgrade_codec()
        self.note(f"plant a code-running pickle in {rel}, digest fixed, codec -> pickle: "
                  f"{downgrade}")

    def downgrade_codec(self) -> None:
        for rel, docs, lines in self.json_files():
            changed = False
            for container, key, old in list(_slots(docs)):
                if key == "codec" or old in ("json", "cloudpickle"):
                    container[key] = "pickle"
                    changed = True
            if changed:
                self.write_json(rel, docs, lines)

    def stray(self) -> None:
        folder = self.parts if self.parts.is_dir() else self.root
        name = f"stray-{self.rng.randrange(10**6)}{self.rng.choice(('.json', '.pkl', ''))}"
        (folder / name).write_bytes(self.rng.choice((b"", b"{}", b"\x00" * 64,
                                                     planted_pickle(self.marker))))
        self.added.add(os.path.relpath(folder / name, self.root))
        self.note(f"add a stray file {name}")

    def empty(self) -> None:
        for rel in self.files():
            if rel != self.base.name:
                self.replace_bytes(rel, b"", fix_digest=self.rng.random() < 0.5)
        self.note("empty every file of the folder")

    def apply(self, case: Case) -> None:
        if case.targeted is not None:
            case.targeted(self)
        else:
            getattr(self, case.family)()


def _slots(docs: Any) -> Iterator[tuple[Any, Any, Any]]:
    """(container, key or index, value) for every value inside ``docs``."""
    stack = [docs]
    while stack:
        item = stack.pop()
        entries = item.items() if isinstance(item, dict) else (
            enumerate(item) if isinstance(item, list) else ())
        for key, value in entries:
            if item is not docs:
                yield item, key, value
            if isinstance(value, dict | list):
                stack.append(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 40 else text[:37] + "..."


# -- the targeted reproductions of issue 9 --------------------------------------------------------

def _set_everywhere(m: Mutator, key: str, value: Any) -> None:
    for rel, docs, lines in m.json_files():
        hits = [(c, k) for c, k, _ in _slots(docs) if k == key]
        for c, k in hits:
            c[k] = value
        if hits:
            m.write_json(rel, docs, lines)
            m.note(f"in {rel} set every {key!r} to {value!r}")


def _segment_link(target: str) -> Callable[[Mutator], None]:
    def apply(m: Mutator) -> None:
        rel = m.pick(inside=True)
        (m.root / rel).unlink()
        (m.root / rel).symlink_to(target)
        m.touch(rel)
        m.note(f"replace {rel} by a symlink to {target}")
    return apply


def _manifest_link(target: str) -> Callable[[Mutator], None]:
    def apply(m: Mutator) -> None:
        m.path.unlink()
        m.path.symlink_to(target)
        m.touch(m.base.name)
        m.note(f"replace {m.base.name} by a symlink to {target}")
    return apply


def _fifo_at(inside: bool) -> Callable[[Mutator], None]:
    def apply(m: Mutator) -> None:
        rel = m.pick(inside=True) if inside else m.base.name
        (m.root / rel).unlink()
        os.mkfifo(m.root / rel)
        m.fifos.append(m.root / rel)
        m.touch(rel)
        m.note(f"replace {rel} by a FIFO")
    return apply


def _escape_to(value: str) -> Callable[[Mutator], None]:
    def apply(m: Mutator) -> None:
        names = {Path(rel).name for rel in m.files() if rel != m.base.name}
        m.planted.append(value)
        for rel, docs, lines in m.json_files():
            hits = [(c, k) for c, k, v in _slots(docs) if isinstance(v, str) and v in names]
            for c, k in hits:
                c[k] = value
            if hits:
                m.write_json(rel, docs, lines)
                m.note(f"in {rel} point every segment name at {value!r}")
    return apply


def _escape_outside(m: Mutator) -> None:
    evil = m.outside_file("evil.bin", m.evil_bytes())
    _escape_to(str(evil))(m)
    for rel in m.files():
        if rel != m.base.name:
            m.fix_digests((m.root / rel).read_bytes(), evil.read_bytes())


def _plant_everywhere(m: Mutator) -> None:
    for rel in m.files():
        if rel != m.base.name:
            m.replace_bytes(rel, planted_pickle(m.marker))
    m.downgrade_codec()
    m.note("plant a code-running pickle in every segment, digests fixed, codec -> pickle")


def _record_field(name: str, value: Any) -> Callable[[Mutator], None]:
    def apply(m: Mutator) -> None:
        if m.base.kind == "json":
            for rel, docs, lines in m.json_files():
                recs = [r for d in docs for r in m.records_in(d)]
                for r in recs:
                    r[name] = value
                if recs:
                    m.write_json(rel, docs, lines)
        else:
            for rel, obj in m.pickled_records():
                recs = m.records_in(obj)
                for r in recs:
                    r[name] = value
                if recs:
                    m.replace_bytes(rel, pickle.dumps(obj))
        m.note(f"set every record's {name!r} to {value!r}, digests fixed")
    return apply


def _every_segment(data: bytes) -> Callable[[Mutator], None]:
    def apply(m: Mutator) -> None:
        payload = data if m.base.kind == "json" else pickle.dumps(json.loads(data))
        for rel in m.files():
            if rel != m.base.name:
                m.replace_bytes(rel, payload)
        m.note(f"replace every segment by {data!r}, digests fixed")
    return apply


def _bomb_manifest(m: Mutator) -> None:
    m.replace_bytes(m.base.name, b"[" * NESTING)
    m.note(f"manifest is {NESTING} nested '['")


def _huge_at(inside: bool) -> Callable[[Mutator], None]:
    def apply(m: Mutator) -> None:
        rel = m.pick(inside=True) if inside else m.base.name
        os.truncate(m.root / rel, HUGE)
        m.touch(rel)
        m.note(f"extend {rel} to a sparse 2 GiB")
    return apply


def _unreferenced(m: Mutator) -> list[str]:
    """Files of the folder whose name the manifest does not quote (a journal, say)."""
    try:
        manifest = m.path.read_bytes()
    except OSError:
        manifest = b""
    return [rel for rel in m.files()
            if rel != m.base.name and Path(rel).name.encode() not in manifest]


def _unreferenced_truncated(m: Mutator) -> None:
    for rel in _unreferenced(m) or [m.pick(inside=True)]:
        size = (m.root / rel).stat().st_size
        length = m.rng.randrange(size) if size else 0
        os.truncate(m.root / rel, length)
        m.touch(rel, truncation=True)
        m.note(f"truncate {rel} from {size} to {length} bytes")


def _unreferenced_flipped(m: Mutator) -> None:
    for rel in _unreferenced(m) or [m.pick(inside=True)]:
        data = bytearray((m.root / rel).read_bytes())
        if data:
            at = m.rng.randrange(len(data))
            data[at] ^= 1 << m.rng.randrange(8)
            m.replace_bytes(rel, bytes(data), fix_digest=False)
            m.note(f"flip bit of byte {at} of {rel}")


def _manifest_is_directory(m: Mutator) -> None:
    m.path.unlink()
    m.path.mkdir()
    m.touch(m.base.name)
    m.note("the checkpoint path is a directory")


TARGETED: dict[str, Callable[[Mutator], None]] = {
    "codec-downgrade-with-plant": _plant_everywhere,
    "codec-pickle": lambda m: _set_everywhere(m, "codec", "pickle"),
    "codec-unknown": lambda m: _set_everywhere(m, "codec", "marshal"),
    "version-2": lambda m: _set_everywhere(m, "version", 2),
    "version-string": lambda m: _set_everywhere(m, "version", "1"),
    "escape-etc-passwd": _escape_to("/etc/passwd"),
    "escape-dotdot": _escape_to("../../x"),
    "escape-absolute-outside": _escape_outside,
    "bomb-manifest": _bomb_manifest,
    "manifest-dev-zero": _manifest_link("/dev/zero"),
    "segment-dev-zero": _segment_link("/dev/zero"),
    "segment-etc-passwd-link": _segment_link("/etc/passwd"),
    "manifest-fifo": _fifo_at(inside=False),
    "segment-fifo": _fifo_at(inside=True),
    "attempts-abc": _record_field("attempts", "abc"),
    "status-unknown": _record_field("status", "done-ish"),
    "status-list": _record_field("status", []),
    "key-int": _record_field("key", 12),
    "segments-empty-dict": _every_segment(b"{}"),
    "segments-empty-list": _every_segment(b"[]"),
    "huge-manifest": _huge_at(inside=False),
    "huge-segment": _huge_at(inside=True),
    "manifest-directory": _manifest_is_directory,
    "manifest-removed": lambda m: m.remove_manifest(),
    "unreferenced-truncated": _unreferenced_truncated,
    "unreferenced-flipped": _unreferenced_flipped,
    "folder-removed": lambda m: m.remove_folder(),
}


def all_cases() -> list[Case]:
    rng = random.Random(SEED)
    cases: list[Case] = []
    for kind in KINDS:
        for variant in VARIANTS:
            for n, (name, apply) in enumerate(TARGETED.items()):
                cases.append(Case(kind, variant, name, n, rng.randrange(2**32), n % 2 == 1,
                                  apply))
            for n in range(GENERATED):
                cases.append(Case(kind, variant, rng.choice(FAMILIES), n, rng.randrange(2**32),
                                  rng.random() < 0.5))
    return cases


CASES = all_cases()

# Bugs this harness found that are not fixed yet: strict, so a fix makes them fail as XPASS and
# the entry gets removed. Keyed by case family and kind (the variants all show it).
KNOWN_BUGS: dict[tuple[str, str], str] = {}


def _param(case: Case) -> Any:
    bug = KNOWN_BUGS.get((case.family, case.kind))
    marks = [pytest.mark.xfail(reason=bug, strict=True)] if bug else []
    return pytest.param(case, id=case.id, marks=marks)


# -- running one case -----------------------------------------------------------------------------

@dataclass
class Outcome:
    error: BaseException | None = None
    restored: dict[int, Any] = field(default_factory=dict)
    final: dict[int, Any] = field(default_factory=dict)
    statuses: set[str] = field(default_factory=set)
    again: int = 0  # what one more resume restores after the resumed run finished
    again_error: BaseException | None = None


def resume_and_run(case: Case, path: Path) -> Outcome:
    outcome = Outcome()
    try:
        if case.explicit:
            runner = TaskRunner.resume(open_kind(case.kind, path))
        else:
            runner = TaskRunner.resume(path)
        with runner:
            handles = submit_all(runner)
            outcome.restored = {i: h.result() for i, h in handles.items() if h.restored}
            runner.run()
            outcome.final = {i: h.result() for i, h in handles.items()}
            outcome.statuses = {h.status.value for h in handles.values()}
    except BaseException as exc:  # judged by the caller
        outcome.error = exc
        return outcome
    try:
        outcome.again = count_restored(path)
    except BaseException as exc:
        outcome.again_error = exc
    return outcome


@contextlib.contextmanager
def address_space_cap() -> Iterator[None]:
    """Cap the address space so an unbounded read fails fast instead of eating the box."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    try:
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * resource.getpagesize()
    except OSError:  # no /proc (macOS, which does not enforce RLIMIT_AS anyway)
        yield
        return
    cap = size + HEADROOM
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def release_fifos(fifos: list[Path]) -> None:
    """Unblock a reader stuck on a FIFO: open the write end (it succeeds once a reader waits)."""
    for fifo in fifos:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def confined(reported: str, path: Path) -> bool:
    where = os.path.normpath(os.path.abspath(reported))
    parts = os.path.normpath(str(path) + ".d")
    return where == os.path.normpath(str(path)) or where.startswith(parts + os.sep)


def judge(case: Case, base: Base, m: Mutator, outcome: Outcome) -> str | None:
    """None if the outcome is acceptable, else why not."""
    if m.marker.exists():
        return "a planted pickle ran code during the load"
    err = outcome.error
    if isinstance(err, CheckpointError):
        message = str(err)
        if str(m.path) not in message:
            return f"CheckpointError does not name the checkpoint {m.path}: {message}"
        reported = getattr(err, "path", None)
        if reported is not None and not confined(str(reported), m.path):
            return f"CheckpointError.path is {reported!r}, outside the checkpoint: {message}"
        for planted in m.planted:
            if re.search(r"(delete|remove)\s+'?" + re.escape(planted), message):
                return f"CheckpointError tells the user to delete a planted path: {message}"
        return None
    if err is not None:
        return f"{type(err).__name__} instead of CheckpointError: {str(err)[:300]}"
    wrong = {i: v for i, v in outcome.restored.items() if v != base.values[i]}
    if wrong:
        return f"restored wrong values {wrong}"
    if outcome.final != base.values or outcome.statuses != {"completed"}:
        return f"the resumed run ended with {outcome.final} ({outcome.statuses})"
    if m.links_out and not m.touched <= base.non_essential and \
            len(outcome.restored) == base.restored:
        return "a symlink to a copy outside the checkpoint was followed"
    if outcome.again_error is not None or outcome.again != len(PARENTS):
        return (f"after the resumed run completed every task, resuming again restored "
                f"{outcome.again} tasks ({outcome.again_error!r})")
    if not outcome.restored and base.restored:
        exempt = (m.touched <= base.non_essential | m.added) or (
            m.only_truncated_parts and m.touched)
        if not exempt:
            return (f"silent fresh start: nothing restored and no CheckpointError (touched "
                    f"{sorted(m.touched)}; non-essential: {sorted(base.non_essential)})")
    return None


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_corrupted_checkpoint_is_refused_or_restored(
        case: Case, bases: dict[tuple[str, str], Base], tmp_path: Path) -> None:
    base = bases[case.kind, case.variant]
    root = tmp_path / "ckpt"
    shutil.copytree(base.root, root, symlinks=True)
    m = Mutator(base, root, random.Random(case.seed))
    m.apply(case)
    done: list[Outcome] = []
    with address_space_cap():
        worker = threading.Thread(target=lambda: done.append(resume_and_run(case, m.path)),
                                  daemon=True)
        worker.start()
        worker.join(HANG_GUARD)
    hung = worker.is_alive()
    if hung:
        release_fifos(m.fifos)
        worker.join(HANG_GUARD)
    how = f"{case.id} (seed {SEED}, resume via {'checkpointer' if case.explicit else 'path'}): " \
          f"{'; '.join(m.what) or 'no change'}"
    assert not hung, f"{how}: resume did not return within {HANG_GUARD:.0f} s"
    assert done, f"{how}: the resume thread died"
    outcome = done[0]
    print(f"OUTCOME {case.id}: " + (
        f"{type(outcome.error).__name__}: {outcome.error}" if outcome.error is not None
        else f"restored {len(outcome.restored)} of {base.restored}"))
    verdict = judge(case, base, m, outcome)
    assert verdict is None, f"{how}: {verdict}"


def test_enough_cases() -> None:
    generated = [c for c in CASES if c.targeted is None]
    assert len(generated) >= 300
    assert {c.kind for c in CASES} == set(KINDS)
    assert {c.family for c in generated} == set(FAMILIES)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kind", KINDS)
def test_pristine_checkpoint_restores_every_completed_task(
        kind: str, variant: str, bases: dict[tuple[str, str], Base]) -> None:
    """What the corruption cases start from. A crash inside the third run loses only
    cell(11), the one task that never started; the other checkpoints hold every task."""
    expected = len(PARENTS) - (variant == "crashed")
    assert bases[kind, variant].restored == expected


def test_oracle_accepts_the_pristine_checkpoints(bases: dict[tuple[str, str], Base],
                                                 tmp_path: Path) -> None:
    """The oracle itself: an unmutated copy resumes correctly and restores everything."""
    for (kind, variant), base in bases.items():
        root = tmp_path / f"{kind}-{variant}"
        shutil.copytree(base.root, root, symlinks=True)
        case = Case(kind, variant, "none", 0, 0, kind != "json")
        m = Mutator(base, root, random.Random(0))
        outcome = resume_and_run(case, m.path)
        assert judge(case, base, m, outcome) is None
        assert len(outcome.restored) == base.restored
