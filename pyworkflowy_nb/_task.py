"""Tasks: the decorator, the class form, and the ``Task`` object both produce.

A ``Task`` is a callable with options; it holds no run state. Calling it runs the function
directly (handy in unit tests); ``submit`` hands it to a runner and returns a handle.
Options are validated here, once, at decoration time, so a mistake surfaces where it was made.

Defaults are pyWorkflowy 0.1.0's: no retries, exponential backoff from 1 s capped at 30 s,
retry on any ``Exception``, no timeout, ``on_dep_failure="fail"``. ``backend`` reads "asyncio"
when not given, as in 0.1.0, but such a task follows the runner's ``backend=`` (0.1.0 applied
the runner's default to plain callables only): the handle's ``backend`` says where it ran.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, ParamSpec, TypeVar, overload

from ._arguments import check_optional_seconds, check_runner, check_seconds
from ._context import get_current_runner
from ._policy import BACKENDS, BACKOFFS, DEP_POLICIES, RetryPolicy, check_choice, check_non_negative

if TYPE_CHECKING:
    from ._handle import TaskHandle

__all__ = ["Task", "TaskBase", "task"]

P = ParamSpec("P")
R = TypeVar("R")

_NO_RUNNER = (
    "no runner is active for {name!r}: wrap your submission code in "
    "`with TaskRunner() as runner:`, pass runner=..., or call runner.submit(task, ...)"
)


def _default_name(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "<unknown>"
    qualname = getattr(fn, "__qualname__", None)
    if qualname is None:  # functools.partial, callable instances
        return f"{module}.{type(fn).__name__}-{id(fn):x}"
    if "<lambda>" in qualname:
        # Two lambdas in one scope share a qualname; the id keeps their names apart.
        return f"{module}.{qualname}-{id(fn):x}"
    return f"{module}.{qualname}"


def _normalise_retry_on(value: object) -> tuple[type[BaseException], ...]:
    items = value if isinstance(value, tuple) else (value,)
    if not items:
        raise ValueError(
            "retry_on=() retries nothing: name the exceptions to retry, e.g. "
            "retry_on=(OSError,), or pass retries=0 for no retries")
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise TypeError(
                f"retry_on must be an exception class or a tuple of them, got {item!r}"
            )
    return items


class Task(Generic[P, R]):
    """A function plus how to run it. Produced by ``@task`` and by ``TaskBase`` subclasses."""

    __slots__ = ("__dict__", "_backend", "_code_fp", "_owner_cls", "cache", "cache_key_fn",
                 "cache_ttl", "fn", "is_async", "name",
                 "on_dep_failure", "priority", "retry", "timeout", "version")

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        backend: str | None = None,
        retries: int | None = None,
        max_attempts: int | None = None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        backoff: str = "exponential",
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        jitter: float = 0.0,
        timeout: float | None = None,
        on_dep_failure: str = "fail",
        priority: int = 0,
        version: str | None = None,
        cache: bool = False,
        cache_ttl: float | None = None,
        cache_key_fn: Callable[..., str] | None = None,
        _owner_cls: type[TaskBase] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@task needs a function, got {fn!r} ({type(fn).__name__})")
        if retries is not None and max_attempts is not None:
            raise ValueError(
                f"pass either retries= or max_attempts=, not both (got retries={retries!r}, "
                f"max_attempts={max_attempts!r}); max_attempts=N means retries=N-1"
            )
        if max_attempts is not None:
            check_non_negative("max_attempts", max_attempts, integer=True, positive=True)
            retries = max_attempts - 1
        retries = 0 if retries is None else retries
        check_non_negative("retries", retries, integer=True)
        timeout = check_optional_seconds("timeout", timeout, above=True,
                                         fix="use timeout=None for no timeout")
        backoff_base = check_seconds("backoff_base", backoff_base)
        backoff_max = check_seconds("backoff_max", backoff_max)
        jitter = check_seconds("jitter", jitter)
        if backend is not None:
            check_choice("backend", backend, BACKENDS)
        check_choice("backoff", backoff, BACKOFFS)
        check_choice("on_dep_failure policy", on_dep_failure, DEP_POLICIES)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an integer, got {priority!r}")
        if version is not None and not isinstance(version, str):
            raise TypeError(f"version must be a string, got {version!r}")
        if not isinstance(cache, bool):
            raise TypeError(f"cache must be True or False, got {cache!r}: the store is "
                            "chosen with TaskRunner(cache=...)")
        cache_ttl = check_optional_seconds("cache_ttl", cache_ttl, above=True,
                                           fix="use cache_ttl=None to keep entries until "
                                           "evicted")
        if cache_key_fn is not None and not callable(cache_key_fn):
            raise TypeError(f"cache_key_fn must be a callable (fn, args, kwargs) -> str, "
                            f"got {cache_key_fn!r}")
        if not cache and (cache_ttl is not None or cache_key_fn is not None):
            raise ValueError("cache_ttl= and cache_key_fn= need cache=True as well")

        self.fn: Callable[P, R] = fn
        self.name: str = name if name is not None else _default_name(fn)
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"task name must be a non-empty string, got {self.name!r}")
        self.is_async: bool = inspect.iscoroutinefunction(fn)
        # None: follow the runner's backend= (the ``backend`` property then reads "asyncio").
        self._backend: str | None = backend
        self.retry = RetryPolicy(
            retries=retries,
            retry_on=_normalise_retry_on(retry_on),
            backoff=backoff,
            backoff_base=float(backoff_base),
            backoff_max=float(backoff_max),
            jitter=float(jitter),
        )
        self.timeout: float | None = None if timeout is None else float(timeout)
        self.on_dep_failure: str = on_dep_failure
        self.priority: int = priority
        self.version: str | None = version
        self.cache: bool = cache
        self.cache_ttl: float | None = cache_ttl
        self.cache_key_fn: Callable[..., str] | None = cache_key_fn
        self._code_fp: str | None = None  # cache_prefix(), computed on first cache use
        self._owner_cls = _owner_cls
        if backend is not None:
            self.check_backend(backend)
        # The user's function keeps its face: help(), `?`, completion and inspect.signature
        # read __wrapped__, __doc__, __name__... from the task as from the function itself.
        # The class form wraps the bound ``run``, so its signature has no ``self``.
        functools.update_wrapper(self, fn)
        if _owner_cls is not None and not getattr(fn, "__doc__", None):
            self.__doc__ = _owner_cls.__doc__

    # -- options ---------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        """The backend this task asked for; "asyncio" (the runner's default) when it named none.

        A task that named none runs on its runner's ``backend=``; ``handle.backend`` tells.
        """
        return self._backend or "asyncio"

    @property
    def retries(self) -> int:
        return self.retry.retries

    @property
    def retry_on(self) -> tuple[type[BaseException], ...]:
        return self.retry.retry_on

    @property
    def backoff(self) -> str:
        return self.retry.backoff

    @property
    def backoff_base(self) -> float:
        return self.retry.backoff_base

    @property
    def backoff_max(self) -> float:
        return self.retry.backoff_max

    @property
    def max_attempts(self) -> int:
        return self.retry.max_attempts

    def check_backend(self, backend: str) -> None:
        """Raise ValueError if this task cannot run on ``backend``."""
        if self.is_async and backend != "asyncio":
            raise ValueError(
                f"async task {self.name!r} cannot run on the {backend!r} backend: coroutines "
                "need the event loop; use backend='asyncio' or make it a plain def"
            )
        if backend == "process":
            # Workers rebuild the task by importing it: the function, or for the class form
            # the class, must be reachable from its module's top level.
            owner = self._owner_cls if self._owner_cls is not None else self.fn
            qualname = getattr(owner, "__qualname__", "")
            if "<lambda>" in qualname or "<locals>" in qualname or not qualname:
                raise ValueError(
                    f"task {self.name!r} cannot run on the 'process' backend: worker processes "
                    "import tasks by name, so it must be a top-level def or class (no "
                    "lambdas, no nested functions or classes); use backend='thread' instead"
                )

    # -- running -----------------------------------------------------------------------------
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function directly, without a runner (no retries, no timeout)."""
        return self.fn(*args, **kwargs)

    def submit(
        self,
        *args: Any,
        depends_on: Iterable[TaskHandle[Any]] | None = (),
        runner: Any = None,
        task_key: str | None = None,
        **kwargs: Any,
    ) -> TaskHandle[R]:
        """Enqueue on ``runner`` (or the one bound by ``with TaskRunner()``); return its handle."""
        if runner is not None:
            check_runner("submit(runner=...)", runner,
                         fix="pass the TaskRunner itself, or leave runner out inside "
                         "`with TaskRunner() as runner:`")
        target = runner if runner is not None else get_current_runner()
        if target is None:
            raise RuntimeError(_NO_RUNNER.format(name=self.name))
        handle: TaskHandle[R] = target.submit(
            self, *args, depends_on=depends_on, task_key=task_key, **kwargs
        )
        return handle

    def cache_prefix(self) -> str:
        """Name, version and a hash of the code: how this task's cache keys begin (see
        ``_cache``). Computed once per task."""
        if self._code_fp is None:
            from ._cache import code_fingerprint, key_prefix

            self._code_fp = key_prefix(self.name, self.version, code_fingerprint(self.fn))
        return self._code_fp

    def map(self, iterable: Iterable[Any], *more_iterables: Iterable[Any], runner: Any = None,
            **common_kwargs: Any) -> list[TaskHandle[R]]:
        """Submit one task per item, like builtin ``map``: ``task.map(xs, ys, k=1)`` submits
        ``task(x, y, k=1)`` for each pair; the handles come back in order.

        Items may be handles (they become dependencies, see ``submit``). Several iterables
        must have the same length: a shorter one is a mistake, not a silent cut, so a
        ValueError names the lengths before anything is submitted.
        """
        columns = [list(iterable), *(list(it) for it in more_iterables)]
        lengths = [len(c) for c in columns]
        if len(set(lengths)) > 1:
            raise ValueError(
                f"{self.name}.map() got iterables of different lengths {lengths}: pass "
                "iterables of equal length (zip them to the shortest yourself if you mean it)")
        if runner is None:
            runner = get_current_runner()
            if runner is None:
                raise RuntimeError(_NO_RUNNER.format(name=self.name))
        return [self.submit(*items, runner=runner, **common_kwargs)
                for items in zip(*columns, strict=True)]

    # -- pickling for the process backend -----------------------------------------------------
    def __reduce__(self) -> tuple[Any, ...]:
        # Workers re-import by name instead of pickling the function's code.
        if self._owner_cls is not None:
            return (_rebuild_class_task, (self._owner_cls,))
        return (_rebuild_task, (self.fn.__module__, self.fn.__qualname__))

    def __repr__(self) -> str:
        return f"<Task {self.name!r} backend={self._backend or 'default'}>"


def _rebuild_task(module: str, qualname: str) -> Task[..., Any]:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj if isinstance(obj, Task) else Task(obj)


def _rebuild_class_task(cls: type[TaskBase]) -> Task[..., Any]:
    rebuilt: Task[..., Any] = cls()  # TaskBase.__new__ returns a Task
    return rebuilt


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    fn: None = None, /, *, name: str | None = ..., backend: str | None = ...,
    retries: int | None = ..., max_attempts: int | None = ...,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = ...,
    backoff: str = ..., backoff_base: float = ..., backoff_max: float = ..., jitter: float = ...,
    timeout: float | None = ..., on_dep_failure: str = ..., priority: int = ...,
    version: str | None = ..., cache: bool = ..., cache_ttl: float | None = ...,
    cache_key_fn: Callable[..., str] | None = ...,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...
def task(fn: Callable[P, R] | None = None, /, **options: Any) -> Any:
    """Turn a function into a :class:`Task`; usable bare (``@task``) or with options."""
    if fn is not None:
        if options:
            raise TypeError("use @task(...) with keyword options only")
        return Task(fn)

    def decorate(f: Callable[P, R]) -> Task[P, R]:
        return Task(f, **options)

    return decorate


_CLASS_OPTIONS = ("backend", "retries", "max_attempts", "retry_on", "backoff", "backoff_base",
                  "backoff_max", "jitter", "timeout", "on_dep_failure", "priority", "version",
                  "cache", "cache_ttl", "cache_key_fn")


class TaskBase:
    """Configure a task with class attributes and implement ``run`` (``def`` or ``async def``).

    Instantiating a subclass returns a :class:`Task`, the same type ``@task`` produces.
    """

    name: ClassVar[str | None] = None
    backend: ClassVar[str | None] = None
    retries: ClassVar[int | None] = None
    max_attempts: ClassVar[int | None] = None
    retry_on: ClassVar[type[BaseException] | tuple[type[BaseException], ...]] = Exception
    backoff: ClassVar[str] = "exponential"
    backoff_base: ClassVar[float] = 1.0
    backoff_max: ClassVar[float] = 30.0
    jitter: ClassVar[float] = 0.0
    timeout: ClassVar[float | None] = None
    on_dep_failure: ClassVar[str] = "fail"
    priority: ClassVar[int] = 0
    version: ClassVar[str | None] = None
    cache: ClassVar[bool] = False
    cache_ttl: ClassVar[float | None] = None
    cache_key_fn: ClassVar[Callable[..., str] | None] = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:
            raise TypeError(
                f"{cls.__name__}() got arguments, but TaskBase subclasses have no constructor "
                "arguments: configure the task with class attributes and pass runtime values to "
                "submit(...), which forwards them to run()"
            )
        if cls is TaskBase or cls.run is TaskBase.run:
            raise TypeError(f"{cls.__name__} must define a run() method to be a task")
        instance = object.__new__(cls)
        options = {opt: getattr(cls, opt) for opt in _CLASS_OPTIONS}
        name = cls.name or f"{cls.__module__}.{cls.__qualname__}"
        return Task(instance.run, name=name, _owner_cls=cls, **options)

    def run(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - replaced by subclasses
        raise NotImplementedError
