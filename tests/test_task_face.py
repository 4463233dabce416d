"""``@task`` keeps the function's face: signature, docs and names come from the user's code."""

from __future__ import annotations

import inspect
import pydoc

from pyworkflowy_nb import TaskBase, task


@task
def load(path: str, limit: int = 3) -> list[str]:
    """Load up to ``limit`` lines from ``path``."""
    return [path] * limit


@task(retries=1)
def with_options(x: float, *, scale: float = 2.0) -> float:
    """Scale x."""
    return x * scale


class Fetch(TaskBase):
    """Fetch a page."""

    def run(self, url: str, retries_seen: int = 0) -> str:
        return url


def test_signature_is_the_function_s() -> None:
    sig = inspect.signature(load)
    assert list(sig.parameters) == ["path", "limit"]
    assert sig.parameters["limit"].default == 3
    assert sig == inspect.signature(load.fn)
    kw = inspect.signature(with_options).parameters["scale"]
    assert kw.kind is inspect.Parameter.KEYWORD_ONLY


def test_wrapper_attributes() -> None:
    assert load.__wrapped__ is load.fn
    assert load.__doc__ == "Load up to ``limit`` lines from ``path``."
    assert load.__name__ == "load"
    assert load.__qualname__ == "load"
    assert load.__module__ == __name__
    assert with_options.__doc__ == "Scale x."


def test_help_shows_the_user_s_docstring_not_the_task_class() -> None:
    text = pydoc.render_doc(load, renderer=pydoc.plaintext)
    assert "Load up to" in text
    assert "A function plus how to run it" not in text


def test_class_form_keeps_run_s_signature() -> None:
    fetch = Fetch()
    assert list(inspect.signature(fetch).parameters) == ["url", "retries_seen"]
    assert fetch.__doc__ == "Fetch a page."  # run() has none: the class's docstring
    assert fetch("u") == "u"
