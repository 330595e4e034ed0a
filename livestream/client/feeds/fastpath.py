"""The struct fast path of a feed stream: messages decoded by msgspec into a small Struct.

For the common stream shape (no ``path``, an object per message, columns known, a
one-field ``select`` on a text value or none), :func:`plan` builds a
``msgspec.json.Decoder`` for a Struct made for the stream: one field per key the
stream reads (nested objects of a dotted ``source`` as nested Structs) and the
``select`` key. Decoding a message into it skips every other field in C and builds
no dict; the stream's handler appends the Struct's values to its per-column lists
(:attr:`FastPlan.reads`), which are converted once per batch as the general path's
are. Pure: no socket, no loop.

The fast path must give exactly what the general path (``orjson.loads`` into a
dict, then the stream's handler) gives, so a message it cannot take *as is* raises
in the decoder and goes to the general path instead:

* a value the stream reads is decoded only if it is a JSON string, number that fits
  in an int64 or a float, ``true``/``false`` or ``null`` (msgspec would keep an
  integer beyond 64 bits as an ``int`` where orjson gives a float, and containers
  may hold such integers); anything else (an array, an object, a big integer) is
  a validation error;
* a nested object that is not an object (a string, an array) is a validation error;
* the message must be text (a ``str``): the transport has checked its UTF-8,
  which msgspec does not check in the fields it skips;
* the ``select`` value is compared only when it is text, where both decoders agree.

A missing field and a JSON ``null`` both read as ``None``, as in the general path.
Nesting deeper than about a thousand levels (msgspec's limit follows Python's recursion
limit, orjson's is 1024) raises in msgspec first, so it goes to the general path too.

**The one difference:** msgspec skips a field the stream does not read without
converting its numbers, so a message whose *unread* field holds a number beyond
float64's range (``1e400``, or an integer of more than 308 digits), which orjson
refuses, gives its row on the fast path where the general path dead-letters it as
``not_json``. In a field the stream reads, both refuse it.

The connection uses the fast path only when the decoded message has nowhere else to
go: one stream, no ``on_message`` callbacks, no acknowledgement awaited, no
``ping_match`` predicate, and for a stream without ``select`` no ``ack_error`` check
(``ack_error=False``). A message the stream does not select is decoded twice (msgspec,
then orjson for the general path, which checks it for a feed error).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Union

import msgspec

from .select import split_path

__all__ = ["FastPlan", "plan"]

#: A value the fast path takes as the general path would: text, an int that fits in an
#: int64 (orjson gives a float beyond 64 bits, msgspec an int), a float, a bool, null.
_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_Leaf = Union[_Int64, float, str, bool, None]  # noqa: UP007 (a runtime type for msgspec)

_names = itertools.count()


@dataclass(frozen=True)
class FastPlan:
    """What a stream needs to run the struct fast path."""

    #: raw message text → a Struct; raises (msgspec errors, RecursionError) where the
    #: message must go to the general path
    decode: Callable[[str], Any]
    #: the Struct attribute holding the ``select`` value (None: no selector)
    select_attr: str | None
    #: the value ``select`` wants (text)
    want: str | None
    #: per column, a Python expression reading its raw value from the Struct ``m``
    #: (None where missing or null)
    reads: tuple[str, ...]


class _Node:
    """One object level of the Struct: its leaves and nested objects, by key."""

    def __init__(self) -> None:
        self.leaves: dict[str, str] = {}  # key → attribute
        self.children: dict[str, tuple[str, _Node]] = {}  # key → (attribute, node)
        self.anys: dict[str, str] = {}  # key → attribute, any JSON value (the selector's)
        self.n = 0

    def attr(self) -> str:
        self.n += 1
        return f"f{self.n - 1}"

    def leaf(self, key: str) -> str | None:
        if key in self.children:
            return None  # the key is read both as a value and as an object: not here
        if key not in self.leaves:
            self.leaves[key] = self.attr()
        return self.leaves[key]

    def child(self, key: str) -> tuple[str, _Node] | None:
        if key in self.leaves:
            return None
        if key not in self.children:
            self.children[key] = (self.attr(), _Node())
        return self.children[key]

    def struct(self) -> type:
        fields: list[tuple[str, Any, Any]] = []
        rename: dict[str, str] = {}
        for k, a in self.leaves.items():
            fields.append((a, _Leaf, None))
            rename[a] = k
        for k, (a, node) in self.children.items():
            fields.append((a, node.struct() | None, None))
            rename[a] = k
        for k, a in self.anys.items():
            fields.append((a, Any, None))
            rename[a] = k
        return msgspec.defstruct(f"_FeedRecord{next(_names)}", fields, rename=rename,
                                 gc=False)


def plan(parser: Any) -> FastPlan | None:
    """The fast path for a stream's :class:`~livestream.client.feeds.parse.RowParser`,
    or None where it does not apply (a ``path``, envelope columns, array positions, a
    predicate or several-field ``select``, a non-text ``select`` value, unknown columns)."""
    if parser.path is not None or parser.env_cols or parser.cols is None or parser.positional:
        return None
    if parser.select is not None and parser.select_field is None:
        return None
    root = _Node()
    exprs: list[str] = []
    for c in parser.cols:
        parts = split_path(c.source) if c.nested else [c.source]
        if not parts or not all(isinstance(p, str) for p in parts):
            return None
        node, chain = root, []
        for p in parts[:-1]:
            got = node.child(p)
            if got is None:
                return None
            a, node = got
            chain.append(a)
        leaf = node.leaf(parts[-1])
        if leaf is None:
            return None
        chain.append(leaf)
        exprs.append(_read(chain))
    select_attr = want = None
    if parser.select_field is not None:
        key, want = parser.select_field
        if type(want) is not str or key in root.children:
            return None
        select_attr = root.leaves.get(key)
        if select_attr is None:  # read only for the selector: any JSON value will do
            select_attr = root.anys[key] = root.attr()
    decoder = msgspec.json.Decoder(root.struct())
    return FastPlan(decoder.decode, select_attr, want, tuple(exprs))


def _read(chain: list[str]) -> str:
    """An expression reading ``m.a.b.c`` from a Struct ``m``, None as soon as a nested
    object is missing or null (as the general path's getters give)."""
    if len(chain) == 1:
        return f"m.{chain[0]}"
    levels, e = [], "m"
    for a in chain[:-1]:
        e = f"{e}.{a}"
        levels.append(e)
    cond = " or ".join(f"{lv} is None" for lv in levels)
    return f"(None if {cond} else {e}.{chain[-1]})"
