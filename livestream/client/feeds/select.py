"""Selecting messages and finding values in them: the first step of a feed stream.

A stream's ``select=`` becomes a predicate (:func:`compile_selector`; a one-field
match is also given as ``(key, value)`` by :func:`simple_field_match` so a stream
can inline it), ``path=`` and each column's ``source`` become getters
(:func:`compile_get`, :func:`plain_get`) that return :data:`MISSING` instead of
raising, and :func:`compile_extract` makes one fast record → row-tuple function
that raises where a value is missing (the slow getters then look value by value).
Pure: nothing here touches a socket or a loop.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["MISSING", "PathSpec", "Selector", "compile_extract", "compile_get",
           "compile_selector", "idx", "plain_get", "simple_field_match", "split_path",
           "value_exprs"]

Selector = Callable[[Any], bool] | Mapping[str, Any] | None
PathSpec = str | Sequence[str | int] | Callable[[Any], Any] | None


def compile_selector(select: Selector) -> Callable[[Any], bool] | None:
    """``None`` (every message), a predicate, or a field match such as ``{"type": "ticker"}``.

    Keys of a field match may be dotted (``{"arg.channel": "trades"}``); a value
    may be a set/tuple/list of accepted values. A key that is an integer (``2``,
    ``-1``) or its text (``"2"``, ``"1.0"`` for a nested array) picks an array
    position, so ``{-2: "trade"}`` matches ``[42, [...], "trade", "XBT/USD"]``
    (and, for an object, the key ``"-2"``).
    """
    if select is None:
        return None
    if callable(select):
        return select
    if not isinstance(select, Mapping) or not select:
        raise TypeError(
            "select must be a predicate (a function of the message) or a non-empty dict "
            f"of field values such as {{'type': 'ticker'}}, got {select!r}"
        )
    items = []
    for k, v in select.items():
        if isinstance(k, bool) or not isinstance(k, (str, int)):
            raise TypeError(f"select keys must be field names or array positions, got {k!r}")
        getter = compile_get(k)
        if isinstance(v, (set, frozenset, tuple, list)):
            items.append((getter, frozenset(v), True))
        else:
            items.append((getter, v, False))
    field = simple_field_match(select)
    if field is not None:
        key, want = field

        def match_one(m: Any) -> bool:
            return type(m) is dict and m.get(key, MISSING) == want
        return match_one

    def match(m: Any) -> bool:
        for getter, want, many in items:
            v = getter(m)
            if many:
                try:
                    if v not in want:
                        return False
                except TypeError:  # unhashable
                    return False
            elif v is MISSING or v != want:
                return False
        return True

    return match


def simple_field_match(select: Selector) -> tuple[str, Any] | None:
    """``(key, value)`` when ``select`` is a one-field match on a top-level key, else None.

    Such a selector is ``type(m) is dict and m.get(key, <missing>) == value``, which a
    feed stream inlines into its per-message handler.
    """
    if not isinstance(select, Mapping) or len(select) != 1:
        return None
    ((key, want),) = select.items()
    if (not isinstance(key, str) or "." in key or key.lstrip("-").isdigit()
            or isinstance(want, (set, frozenset, tuple, list))):
        return None
    return key, want


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


#: What a getter returns where a value is absent (``None`` is a value: JSON null).
MISSING: Any = _Missing()


def split_path(path: str | int | Sequence[str | int]) -> list[str | int]:
    if isinstance(path, int):
        return [path]
    if isinstance(path, str):
        if not path:
            raise ValueError("a path must not be empty")
        return [int(p) if p.lstrip("-").isdigit() else p for p in path.split(".")]
    return list(path)


def compile_get(path: str | int | Sequence[str | int]) -> Callable[[Any], Any]:
    """A function returning the value at ``path`` or ``MISSING``."""
    parts = split_path(path)

    def get(obj: Any) -> Any:
        for p in parts:
            if isinstance(p, int):
                if type(obj) is list and -len(obj) <= p < len(obj):
                    obj = obj[p]
                elif type(obj) is dict:  # "2" in a path is also the key "2" of an object
                    obj = obj.get(str(p), MISSING)
                    if obj is MISSING:
                        return obj
                else:
                    return MISSING
            elif type(obj) is dict:
                obj = obj.get(p, MISSING)
                if obj is MISSING:
                    return obj
            else:
                return MISSING
        return obj

    return get




def idx(obj: Any, i: int) -> Any:
    """``obj[i]`` for a list (raises for anything else, as a missing value)."""
    if type(obj) is not list:
        raise TypeError("not a list")
    return obj[i]


def value_exprs(paths: list[list[str | int]], var: str = "r") -> list[str]:
    """Python expressions reading each column's value out of the record named ``var``.

    Keys are subscripts (``r['p']``, ``r['k']['c']``), list indices go through
    :func:`idx`: a missing value or another shape raises (KeyError, TypeError,
    IndexError), where the value-by-value getters give None.
    """
    exprs = []
    for parts in paths:
        e = var
        for part in parts:
            e = f"idx({e}, {part!r})" if isinstance(part, int) else f"{e}[{part!r}]"
        exprs.append(e)
    return exprs


def compile_extract(paths: list[list[str | int]]) -> Callable[[Any], tuple]:
    """A record → row-tuple function reading :func:`value_exprs` (raises where a value
    is missing). Plain keys use one ``operator.itemgetter`` call."""
    if len(paths) > 1 and all(len(p) == 1 and isinstance(p[0], str) for p in paths):
        return operator.itemgetter(*(p[0] for p in paths))
    src = f"def extract(r):\n    return ({', '.join(value_exprs(paths))},)\n"
    ns: dict[str, Any] = {"idx": idx}
    exec(compile(src, "<livestream feed columns>", "exec"), ns)  # keys and indices are repr()s
    return ns["extract"]


def plain_get(source: str | int) -> Callable[[Any], Any]:
    if isinstance(source, int):
        def get_index(r: Any) -> Any:
            if type(r) is list and -len(r) <= source < len(r):
                return r[source]
            return MISSING
        return get_index

    def get_key(r: Any) -> Any:
        return r.get(source, MISSING) if type(r) is dict else MISSING

    return get_key
