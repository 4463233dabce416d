"""The checkpoint signing key now lives in the engine (:mod:`pyworkflowy_nb._keys`), which signs
every pickle-based checkpoint; this module keeps the notebook layer's old import path."""

from __future__ import annotations

from .._keys import (
    KEY_ENV_VAR,
    KEY_SIZE,
    default_key_path,
    load_or_create_key,
    sign_bytes,
    signatures_match,
)

__all__ = [
    "KEY_ENV_VAR",
    "KEY_SIZE",
    "default_key_path",
    "load_or_create_key",
    "sign_bytes",
    "signatures_match",
]
