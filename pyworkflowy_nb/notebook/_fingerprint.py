"""A stable fingerprint of a function's code, for cell-defined tasks.

A function defined in a notebook cell lives in ``__main__`` and its code
objects carry a ``co_filename`` such as ``/tmp/ipykernel_12345/123456789.py``:
the kernel's pid and a hash of the cell, which change on every restart.  Its
``co_firstlineno`` moves whenever a line is added above it.  A task identity
built from either would never match its checkpoint after a restart, so, like
``joblib.Memory``, we leave them out and hash what decides behaviour instead:

* for a code object: its bytecode, constants (nested code objects are hashed
  recursively, so inner functions, lambdas and comprehensions count), names,
  local/free/cell variable names, argument counts, flags and exception table;
  never the filename, the first line number or the line table;
* for a function: its code, defaults, keyword defaults and closure contents,
  plus the functions, classes and plain-data globals it refers to by name
  from the same module, so editing a helper cell or a constant such as
  ``THRESHOLD = 5`` changes the fingerprint of every function that uses it;
* for a class: its name, bases and the attributes in its ``__dict__``.

Values that have no stable, cheap description (a DataFrame default, an open
file in a closure) contribute their type's qualified name only: hashing them
would be slow or would capture ``id()``-laden reprs.  The fingerprint is only
meaningful within one Python version, since bytecode differs between
versions; the cloudpickle checkpointer refuses foreign versions anyway.
"""

from __future__ import annotations

import functools
import hashlib
import types
from typing import Any

__all__ = ["code_fingerprint"]

# Attributes the interpreter adds to every class body; they say nothing about
# behaviour (and __firstlineno__ on 3.13+ is exactly what we must not hash).
_CLASS_NOISE = frozenset(
    {
        "__dict__",
        "__weakref__",
        "__module__",
        "__qualname__",
        "__firstlineno__",
        "__static_attributes__",
    }
)

_PRIMITIVES = (type(None), bool, int, float, complex, str, bytes, type(Ellipsis))


def code_fingerprint(obj: object) -> str:
    """Return a hex SHA-256 fingerprint of the code behind ``obj``.

    ``obj`` may be a function, lambda, method, ``functools.partial``, class,
    code object, or any callable instance (its class is hashed).  Two objects
    compiled from the same source get the same fingerprint whatever file name
    or line number they were compiled under.
    """
    hasher = _Hasher()
    hasher.feed_callable(obj)
    return hasher.hexdigest()


class _Hasher:
    """Feeds a tagged, length-prefixed token stream into SHA-256.

    Tags and length prefixes make the stream unambiguous: ``("ab", "c")`` and
    ``("a", "bc")`` can never produce the same bytes.
    """

    def __init__(self, parent: _Hasher | None = None) -> None:
        self._sha = hashlib.sha256()
        # Functions and classes already hashed (or being hashed), by id: guards
        # against mutual recursion between helpers and self-referencing
        # classes.  A sub-hasher (for set and dict members, which are hashed
        # separately and sorted) starts from a snapshot of its parent's, so it
        # cannot loop, and what it adds does not depend on sibling order.
        self._visiting: dict[int, str] = dict(parent._visiting) if parent else {}
        # Containers on the current path, to cut self-referencing lists.
        self._containers: set[int] = set(parent._containers) if parent else set()

    def hexdigest(self) -> str:
        return self._sha.hexdigest()

    def _token(self, tag: bytes, payload: bytes = b"") -> None:
        self._sha.update(tag)
        self._sha.update(len(payload).to_bytes(8, "little"))
        self._sha.update(payload)

    def _text(self, tag: bytes, text: str) -> None:
        self._token(tag, text.encode("utf-8", "surrogatepass"))

    # -- entry points -------------------------------------------------------

    def feed_callable(self, obj: object) -> None:
        if isinstance(obj, types.CodeType):
            self.feed_code(obj)
        elif isinstance(obj, types.FunctionType):
            self.feed_function(obj)
        elif isinstance(obj, types.MethodType):
            self._token(b"method")
            self.feed_callable(obj.__func__)
        elif isinstance(obj, functools.partial):
            self._token(b"partial")
            self.feed_callable(obj.func)
            self.feed_value(obj.args)
            self.feed_value(obj.keywords)
        elif isinstance(obj, type):
            self.feed_class(obj)
        elif isinstance(obj, (staticmethod, classmethod)):
            self._token(b"wrapped-method", type(obj).__name__.encode())
            self.feed_callable(obj.__func__)
        elif hasattr(obj, "__code__") and isinstance(obj.__code__, types.CodeType):
            # Cython-compiled or otherwise function-like objects.
            self.feed_code(obj.__code__)
        elif callable(obj) and not isinstance(
            obj, (types.BuiltinFunctionType, types.BuiltinMethodType)
        ):
            self._token(b"instance")
            self.feed_class(type(obj))
        else:
            # Builtins have no Python code; their identity is where they live.
            self._token(b"builtin")
            self._text(b"module", str(getattr(obj, "__module__", None)))
            self._text(b"qualname", str(getattr(obj, "__qualname__", type(obj).__qualname__)))

    # -- code ---------------------------------------------------------------

    def feed_code(self, code: types.CodeType) -> None:
        self._token(b"code")
        self._text(b"name", code.co_name)
        self._text(b"qualname", getattr(code, "co_qualname", code.co_name))
        self._token(
            b"counts",
            b"%d,%d,%d,%d"
            % (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags),
        )
        self._token(b"bytecode", code.co_code)
        # Offsets and handler depths only, no line numbers.
        self._token(b"exctable", getattr(code, "co_exceptiontable", b""))
        for tag, names in (
            (b"names", code.co_names),
            (b"varnames", code.co_varnames),
            (b"freevars", code.co_freevars),
            (b"cellvars", code.co_cellvars),
        ):
            self._token(tag, str(len(names)).encode())
            for name in names:
                self._text(b"n", name)
        self._token(b"consts", str(len(code.co_consts)).encode())
        for const in code.co_consts:
            self.feed_value(const)

    # -- functions and classes ----------------------------------------------

    def feed_function(self, fn: types.FunctionType) -> None:
        if self._enter(fn, fn.__qualname__):
            return
        self._token(b"function")
        self.feed_code(fn.__code__)
        self._token(b"defaults")
        self.feed_value(fn.__defaults__)
        self.feed_value(fn.__kwdefaults__)
        self._token(b"closure")
        for cell in fn.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell: the name is not bound yet
                self._token(b"empty-cell")
            else:
                self.feed_value(contents)
        self._feed_globals(fn)

    def _feed_globals(self, fn: types.FunctionType) -> None:
        """Fold in the same-module functions, classes and data that ``fn`` names."""
        module = fn.__module__
        namespace = fn.__globals__
        names = sorted(_global_names(fn.__code__))
        for name in names:
            if name not in namespace:
                continue
            value = namespace[name]
            if isinstance(value, (types.FunctionType, type)):
                if getattr(value, "__module__", None) != module:
                    continue  # library code: its version is the environment's business
                self._text(b"global", name)
                self.feed_callable(value)
            elif _is_plain_data(value):
                self._text(b"global", name)
                self.feed_value(value)

    def feed_class(self, cls: type) -> None:
        if self._enter(cls, cls.__qualname__):
            return
        self._token(b"class")
        self._text(b"module", cls.__module__)
        self._text(b"qualname", cls.__qualname__)
        for base in cls.__bases__:
            self._text(b"base", f"{base.__module__}.{base.__qualname__}")
        if cls.__module__ == "builtins" or not hasattr(cls, "__dict__"):
            return
        for name in sorted(k for k in vars(cls) if k not in _CLASS_NOISE):
            self._text(b"attr", name)
            member = vars(cls)[name]
            if isinstance(member, (types.FunctionType, staticmethod, classmethod, type)):
                self.feed_callable(member)
            elif isinstance(member, property):
                for accessor in (member.fget, member.fset, member.fdel):
                    self.feed_value(accessor)
            else:
                self.feed_value(member)

    def _enter(self, obj: object, label: str) -> bool:
        """Return True (after emitting a back-reference) if ``obj`` was seen already."""
        seen = self._visiting.get(id(obj))
        if seen is not None:
            self._text(b"backref", seen)
            return True
        self._visiting[id(obj)] = label
        return False

    # -- values ---------------------------------------------------------------

    def _feed_container(self, value: tuple[object, ...] | list[object] | frozenset[object]
                        | set[object] | dict[object, object]) -> None:
        tag = type(value).__name__.encode()
        if isinstance(value, (tuple, list)):
            self._token(tag, str(len(value)).encode())
            for item in value:
                self.feed_value(item)
        elif isinstance(value, dict):
            entries = sorted((self._digest_of(k), self._digest_of(v)) for k, v in value.items())
            self._token(b"dict", "".join(k + v for k, v in entries).encode())
        else:
            # Iteration order of a set depends on string hashing (randomised
            # per process), so order the members by their own digests.
            digests = sorted(self._digest_of(item) for item in value)
            self._token(tag, "".join(digests).encode())

    def _digest_of(self, value: object) -> str:
        sub = _Hasher(self)
        sub.feed_value(value)
        return sub.hexdigest()

    def feed_value(self, value: object) -> None:
        if isinstance(value, types.CodeType):
            self.feed_code(value)
        elif value is None or value is Ellipsis or isinstance(value, bool):
            self._text(b"singleton", repr(value))
        elif isinstance(value, (int, float, complex)):
            # repr keeps 0.0 and -0.0 (and 1 and 1.0, via the type tag) apart.
            self._text(type(value).__name__.encode(), repr(value))
        elif isinstance(value, str):
            self._text(b"str", value)
        elif isinstance(value, bytes):
            self._token(b"bytes", value)
        elif isinstance(value, (tuple, list, frozenset, set, dict)):
            if id(value) in self._containers:
                self._token(b"cycle")
                return
            self._containers.add(id(value))
            try:
                self._feed_container(value)
            finally:
                self._containers.discard(id(value))
        elif isinstance(
            value,
            (types.FunctionType, types.MethodType, functools.partial, type),
        ):
            self.feed_callable(value)
        else:
            self._text(b"opaque", f"{type(value).__module__}.{type(value).__qualname__}")


def _global_names(code: types.CodeType) -> set[str]:
    """Names an code object (or any code nested in it) may look up globally."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _is_plain_data(value: Any, depth: int = 0) -> bool:
    """True for small literal-like globals worth hashing (numbers, strings, tuples of them)."""
    if isinstance(value, _PRIMITIVES):
        return True
    if isinstance(value, (tuple, frozenset)) and depth < 3 and len(value) <= 1000:
        return all(_is_plain_data(item, depth + 1) for item in value)
    return False
