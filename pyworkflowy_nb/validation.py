"""The engine's argument rules, for layers that take the same arguments in another syntax.

The notebook's magics read numbers and paths from a command line, not from Python calls; they
check them with these functions so that a magic refuses exactly what the engine would refuse,
in the same words, and suggests fixes the same way. Everything here is pure (no I/O beyond
looking at a path) and raises ``TypeError``/``ValueError`` with a message that names the bad
value and the fix.

- :func:`check_optional_seconds` and :func:`check_file_path`: the checks the runner applies to
  ``timeout=`` and ``checkpoint_path=``;
- :func:`seconds_ok` / :func:`seconds_range`: the rule for a number of seconds and its wording,
  for parsers that want to phrase their own error; :func:`show` quotes what the user typed;
- :data:`MAX_WORKERS` and :data:`MIN_INTERVAL`: the largest ``max_workers`` and the shortest
  schedule interval the engine accepts;
- :func:`did_you_mean` / :func:`close_matches`: the suggestion every "unknown name" error
  carries.
"""

from __future__ import annotations

from ._arguments import MAX_WORKERS as MAX_WORKERS
from ._arguments import MIN_INTERVAL as MIN_INTERVAL
from ._arguments import check_file_path as check_file_path
from ._arguments import check_optional_seconds as check_optional_seconds
from ._arguments import seconds_ok as seconds_ok
from ._arguments import seconds_range as seconds_range
from ._arguments import show as show
from ._policy import close_matches as close_matches
from ._policy import did_you_mean as did_you_mean

__all__ = [
    "MAX_WORKERS",
    "MIN_INTERVAL",
    "check_file_path",
    "check_optional_seconds",
    "close_matches",
    "did_you_mean",
    "seconds_ok",
    "seconds_range",
    "show",
]
