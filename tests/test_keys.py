"""The per-user HMAC key file (``_keys``): where it lives, its modes, refusals, first use."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from pyworkflowy_nb._keys import KEY_ENV_VAR, default_key_path, load_or_create_key
from pyworkflowy_nb.exceptions import CheckpointError

pytestmark = pytest.mark.usefixtures("key_file")


def test_concurrent_first_use_agrees_on_one_key(key_file: Path) -> None:
    barrier = threading.Barrier(8)
    keys: list[bytes] = []
    lock = threading.Lock()

    def first_use() -> None:
        barrier.wait()
        key = load_or_create_key()
        with lock:
            keys.append(key)

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8
    assert set(keys) == {key_file.read_bytes()}
    assert os.listdir(key_file.parent) == [key_file.name]  # no temp files left


def test_key_location_follows_xdg_and_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV_VAR)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_key_path() == tmp_path / "xdg" / "pyworkflowy_nb" / "checkpoint.key"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".config" / "pyworkflowy_nb" / "checkpoint.key"
    assert default_key_path() == expected
    key = load_or_create_key()
    assert expected.read_bytes() == key


def test_a_key_file_others_can_read_is_refused(key_file: Path) -> None:
    load_or_create_key()
    os.chmod(key_file, 0o644)
    with pytest.raises(CheckpointError, match=r"mode 0644.*chmod 600"):
        load_or_create_key()


def test_a_key_file_of_the_wrong_size_is_refused(key_file: Path) -> None:
    load_or_create_key()
    key_file.write_bytes(b"short")
    with pytest.raises(CheckpointError, match="holds 5 bytes, expected 32"):
        load_or_create_key()


def test_a_symlinked_key_file_is_followed(key_file: Path, tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "checkpoint.key"
    key = load_or_create_key(real)
    key_file.parent.mkdir(parents=True)
    key_file.symlink_to(real)
    assert load_or_create_key() == key
