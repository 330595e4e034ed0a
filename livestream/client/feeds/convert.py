"""Raw JSON values to typed column arrays, a batch at a time: the converters of feed streams.

Each column of a batch (one list of raw values, None where missing) is converted
once with numpy (:func:`convert_column`); only a batch that holds a bad value goes
value by value, to find which rows to dead-letter. Pure: no socket, no loop.

Column types (``columns={"name": type}``):

========================================  ================================================
``float`` / ``"float64"`` / ``"float32"``  numbers and numeric strings; missing → NaN
``int`` / ``"Int64"`` (nullable)           whole numbers (also ``"42"``, ``42.0``); missing → <NA>
``"int64"`` … (numpy ints)                 as above, but a missing value dead-letters the row
``bool`` / ``"boolean"`` (nullable)        true/false, 1/0, "true"/"false"; ``"bool"`` strict
``str`` / ``"string"``                     text; numbers, objects become their JSON text
``"category"``                             text stored as a category
``"datetime"`` / ``"datetime64[ns, UTC]"`` epoch s/ms/µs/ns (numbers or numeric strings;
                                           the unit is read from the magnitude unless
                                           ``Column(unit=…)`` says) and ISO-8601 strings;
                                           ``"datetime64[ns]"`` gives naive UTC times
``"auto"``                                 the type of the first value seen (number → float64,
                                           bool → boolean, text → string)
========================================  ================================================

A column may also have a converter (``Column(convert=...)`` or the third item of
``(source, type, convert)``), applied to each present value before its type: a
function of the value, or one of these names (:func:`named_converter`):

==================  ==================================================================
``"strip"``         text without surrounding spaces
``"lower"``         text in lower case (``"upper"``: upper case)
``"number"``        the first number in a text: ``"seq:42"`` → ``"42"``, ``"12.5%"`` → ``"12.5"``
``"after:SEP"``     the text after the last ``SEP``: ``"after::"`` on ``"seq:42"`` → ``"42"``
``"before:SEP"``    the text before the first ``SEP``
``"json"``          a value sent as JSON text, decoded
``"percent"``       ``"12.5%"`` or ``12.5`` → ``0.125``
==================  ==================================================================

A converter that raises dead-letters the record, naming the column.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ...core.schema import (
    MASKED_TYPES,
    NUMPY_TYPES,
    STRING_DTYPE,
    datetime_parts,
    is_datetime_type,
)

__all__ = ["CONVERTERS", "EPOCH_UNITS", "Col", "Converter", "TypeSpec", "apply_converter",
           "convert_column", "infer_type", "named_converter", "resolve_type", "short"]

TypeSpec = type | str | None
Converter = Callable[[Any], Any] | str | None

#: Nanoseconds per epoch unit.
EPOCH_UNITS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "µs": 1_000, "ns": 1}
_NAT = np.iinfo(np.int64).min


@dataclass
class Col:
    """One output column as the converters see it (made by the row parser)."""

    name: str
    source: str | int
    type: str
    required: bool
    unit: str | None
    nested: bool
    slow: Callable[[Any], Any] | None = None
    #: applied to each present value before the type (see :func:`named_converter`)
    convert: Callable[[Any], Any] | None = None
    #: how the converter was given, for messages
    convert_name: str | None = None
    #: category columns: the dtype of each recent set of labels (a batch's labels are
    #: sorted, so a feed with a steady set of symbols builds its dtype once)
    cat_dtypes: dict[tuple, pd.CategoricalDtype] = field(default_factory=dict)
    #: category columns: the last batch's labels (label → code) and dtype, tried first on
    #: the next batch (see :func:`_categorical_as_last`)
    cat_last: tuple[dict[str, int], pd.CategoricalDtype] | None = None
    #: set by :func:`convert_column` for the batch it converted: True when the conversion
    #: itself showed that no value was None (so the caller need not count them)
    no_nulls: bool = False


# -- types -------------------------------------------------------------------------------

_PY_TYPES: dict[Any, str] = {
    float: "float64",
    int: "Int64",
    bool: "boolean",
    str: "string",
    _dt.datetime: "datetime64[ns, UTC]",
    pd.Timestamp: "datetime64[ns, UTC]",
}
_ALIASES = {
    "float": "float64",
    "double": "float64",
    "int": "Int64",
    "integer": "Int64",
    "str": "string",
    "text": "string",
    "datetime": "datetime64[ns, UTC]",
    "timestamp": "datetime64[ns, UTC]",
    "time": "datetime64[ns, UTC]",
    "auto": "auto",
}


def resolve_type(spec: TypeSpec, column: str = "?") -> str:
    """A column type spec (python type or name) → a livestream logical type or ``"auto"``."""
    if spec is None:
        return "auto"
    if isinstance(spec, type) or spec in _PY_TYPES:
        t = _PY_TYPES.get(spec)
        if t is None:
            raise TypeError(
                f"column {column!r}: unsupported type {spec!r}; use float, int, bool, str, "
                "'category', 'datetime' or a livestream type name such as 'float64'"
            )
        return t
    if not isinstance(spec, str):
        raise TypeError(f"column {column!r}: a type must be a python type or a name, got {spec!r}")
    t = _ALIASES.get(spec, spec)
    if t == "auto" or t in NUMPY_TYPES or t in MASKED_TYPES or t in ("string", "category"):
        return t
    if is_datetime_type(t):
        return t
    raise ValueError(
        f"column {column!r}: unknown type {spec!r}; use float, int, bool, str, 'category', "
        "'datetime', 'datetime64[ns]', 'datetime64[ns, UTC]' or a livestream type name"
    )


def infer_type(value: Any) -> str | None:
    """The type an ``"auto"`` column gets from its first non-null value (None: undecided)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "float64"
    return "string"


def short(v: Any, n: int = 80) -> str:
    try:
        s = orjson.dumps(v).decode()
    except TypeError:
        s = repr(v)
    return s if len(s) <= n else s[: n - 1] + "…"


# -- converters --------------------------------------------------------------------------

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _number(v: Any) -> Any:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v
    m = _NUMBER.search(str(v))
    if m is None:
        raise ValueError("no number in the text")
    return m.group(0)


def _percent(v: Any) -> float:
    if isinstance(v, str):
        v = v.strip().removesuffix("%")
    return float(v) / 100.0


def _text_of(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"a {type(v).__name__} is not text")
    return v


#: The converters that have a name (``Column(convert="number")``).
CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "strip": lambda v: _text_of(v).strip(),
    "lower": lambda v: _text_of(v).lower(),
    "upper": lambda v: _text_of(v).upper(),
    "number": _number,
    "json": lambda v: orjson.loads(v) if isinstance(v, (str, bytes)) else v,
    "percent": _percent,
}


def named_converter(spec: Converter, column: str = "?") -> tuple[Callable[[Any], Any] | None,
                                                                 str | None]:
    """A converter spec (a function, a name of :data:`CONVERTERS`, ``"after:SEP"`` or
    ``"before:SEP"``) → ``(function, name)``; raises naming the column."""
    if spec is None:
        return None, None
    if callable(spec):
        return spec, getattr(spec, "__name__", "converter")
    if not isinstance(spec, str):
        raise TypeError(f"column {column!r}: convert must be a function or a name, got {spec!r}")
    for prefix in ("after:", "before:"):
        if spec.startswith(prefix) and len(spec) > len(prefix):
            sep = spec[len(prefix):]
            if prefix == "after:":
                return (lambda v, sep=sep: _text_of(v).rpartition(sep)[2]), spec
            return (lambda v, sep=sep: _text_of(v).partition(sep)[0]), spec
    fn = CONVERTERS.get(spec)
    if fn is None:
        raise ValueError(
            f"column {column!r}: unknown converter {spec!r}; use a function, "
            f"'after:SEP', 'before:SEP' or one of {sorted(CONVERTERS)}"
        )
    return fn, spec


def apply_converter(vals: list[Any], c: Col, bad: dict[int, str]) -> list[Any]:
    """``vals`` through the column's converter (None stays None); values it fails on
    become None and their rows go to ``bad``."""
    conv = c.convert
    assert conv is not None
    out: list[Any] = []
    for i, v in enumerate(vals):
        if v is None:
            out.append(None)
            continue
        try:
            out.append(conv(v))
        except Exception as exc:
            if i not in bad:
                bad[i] = (f"column {c.name!r}: converter {c.convert_name!r} failed on "
                          f"{short(v)} ({exc!r})")
            out.append(None)
    return out


# -- coercion ----------------------------------------------------------------------------


def convert_column(vals: Sequence[Any], c: Col, bad: dict[int, str]) -> Any:
    """Convert one column of a batch; rows that fail are added to ``bad``. Sets
    ``c.no_nulls`` when the conversion showed that no value was None."""
    t = c.type
    c.no_nulls = False
    if c.required:
        for i, v in enumerate(vals):
            if v is None and i not in bad:
                bad[i] = f"missing required field {c.source!r} (column {c.name!r})"
    if t == "float64" or t == "float32" or t == "Float64" or t == "Float32":
        return _to_float(vals, c, bad)
    if t in ("Int64", "Int32", "Int16", "Int8", "UInt64", "UInt32", "UInt16", "UInt8") or (
        t in NUMPY_TYPES and t[0] in "iu"
    ):
        return _to_int(vals, c, bad)
    if t == "boolean" or t == "bool":
        return _to_bool(vals, c, bad)
    if t == "string" or t == "category":
        return _to_str(vals, c, bad)
    if is_datetime_type(t):
        return _to_datetime(vals, c, bad)
    if t == "auto":  # only for an empty batch
        return np.empty(0, dtype=np.float64)
    raise ValueError(f"column {c.name!r}: type {t!r} is not supported by feed streams")


def _fallback(vals: Sequence[Any], c: Col, bad: dict[int, str], one: Callable[[Any], Any],
              fill: Any) -> list:
    out = []
    for i, v in enumerate(vals):
        if v is None:
            out.append(fill)
            continue
        try:
            out.append(one(v))
        except (ValueError, TypeError, OverflowError) as exc:
            if i not in bad:
                bad[i] = f"column {c.name!r}: cannot convert {short(v)} to {c.type} ({exc})"
            out.append(fill)
    return out


def _float_one(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise TypeError(f"a {type(v).__name__} is not a number")
    return float(v)


_NUMBER_TYPES = frozenset([float, int])


def _floats_from_text(vals: Sequence[Any]) -> np.ndarray | None:
    """A column of numbers sent as text (``"43012.50"``, as many exchanges send prices)
    → float64 with one ``orjson`` parse of the joined values, about 3x cheaper than
    ``np.array(vals, dtype=float)``; None where that does not apply (a value that is
    not text, or not exactly one JSON number), and the general conversion decides.

    Joined with commas, ``n`` texts give ``n`` JSON numbers only if each is one
    number (a comma inside a value would need an empty neighbour, which JSON
    rejects); a JSON number reads as ``float()`` reads it (correctly rounded).
    """
    if not vals or type(vals[0]) is not str:
        return None
    try:
        out = orjson.loads("[" + ",".join(vals) + "]")
    except (TypeError, orjson.JSONDecodeError):
        return None
    if len(out) != len(vals) or not set(map(type, out)) <= _NUMBER_TYPES:
        return None
    try:
        return np.array(out, dtype=np.float64)
    except (OverflowError, ValueError, TypeError):
        return None


def _to_float(vals: Sequence[Any], c: Col, bad: dict[int, str]) -> np.ndarray:
    dtype = np.float32 if c.type.lower() == "float32" else np.float64
    arr = _floats_from_text(vals)
    if arr is not None:
        c.no_nulls = True  # every value was text
        arr = arr.astype(dtype, copy=False)
        return pd.array(arr, dtype=c.type) if c.type[0] == "F" else arr  # type: ignore[return-value]
    try:
        arr = np.array(vals, dtype=np.float64)
        # a bool (not a number here) would have become 1.0 or 0.0: look for one only then
        if arr.ndim != 1 or (((arr == 1.0) | (arr == 0.0)).any()
                             and bool in set(map(type, vals))):
            raise TypeError("bool")
    except (ValueError, TypeError):
        arr = np.array(_fallback(vals, c, bad, _float_one, math.nan), dtype=np.float64)
    c.no_nulls = not np.isnan(arr).any()  # a None is NaN here (NaN may also be a value)
    arr = arr.astype(dtype, copy=False)
    if c.type[0] == "F":
        return pd.array(arr, dtype=c.type)  # type: ignore[return-value]
    return arr


def _int_one(v: Any) -> int:
    if isinstance(v, bool):
        raise TypeError("a bool is not an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError("not a whole number")
        return int(v)
    if isinstance(v, str):
        s = v.strip()
        try:
            return int(s)
        except ValueError:
            f = float(s)
            if not f.is_integer():
                raise ValueError("not a whole number") from None
            return int(f)
    raise TypeError(f"a {type(v).__name__} is not an integer")


def _to_int(vals: Sequence[Any], c: Col, bad: dict[int, str]) -> Any:
    t = c.type
    np_t = np.dtype(t.lower())
    info = np.iinfo(np_t)
    nullable = t in MASKED_TYPES
    kinds = set(map(type, vals))
    if kinds == {int}:
        try:
            data = np.array(vals, dtype=np_t)
            return pd.array(data, dtype=t) if nullable else data
        except OverflowError:
            pass

    def one(v: Any) -> int:
        x = _int_one(v)
        if x < info.min or x > info.max:
            raise OverflowError(f"outside the range of {t}")
        return x

    out = _fallback(vals, c, bad, one, None)
    mask = np.array([v is None for v in out], dtype=bool)
    if mask.any() and not nullable:
        for i in np.flatnonzero(mask):
            if int(i) not in bad:
                bad[int(i)] = (
                    f"column {c.name!r}: missing value, and {t} cannot hold nulls "
                    f"(use int or 'Int64' for a nullable column)"
                )
    data = np.array([0 if v is None else v for v in out], dtype=np_t)
    if nullable:
        return pd.arrays.IntegerArray(data, mask)
    return data


_TRUE = frozenset(["true", "1", "yes", "t", "y"])
_FALSE = frozenset(["false", "0", "no", "f", "n"])


def _bool_one(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        s = v.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    raise ValueError("not a boolean")


def _to_bool(vals: Sequence[Any], c: Col, bad: dict[int, str]) -> Any:
    out = _fallback(vals, c, bad, _bool_one, None)
    mask = np.array([v is None for v in out], dtype=bool)
    data = np.array([bool(v) for v in out], dtype=bool)
    if c.type == "bool":
        for i in np.flatnonzero(mask):
            if int(i) not in bad:
                bad[int(i)] = f"column {c.name!r}: missing value, and bool cannot hold nulls"
        return data
    return pd.arrays.BooleanArray(data, mask)


def _str_one(v: Any) -> str:
    if isinstance(v, str):
        return v
    return orjson.dumps(v).decode()


def _to_str(vals: Sequence[Any], c: Col, bad: dict[int, str]) -> Any:
    arr = np.empty(len(vals), dtype=object)
    if c.type == "category":
        got = _categorical_as_last(vals, c)
        if got is not None:
            return got
        # factorize first and check the few distinct values, not every value
        arr[:] = vals
        try:
            return _categorical(arr, c)
        except TypeError:  # a value that is not text (a number, an object, an array)
            pass
    if set(map(type, vals)) == {str}:
        arr[:] = vals
    else:
        arr[:] = _fallback(vals, c, bad, _str_one, None)
    if c.type == "category":
        return _categorical(arr, c)
    return pd.array(arr, dtype=STRING_DTYPE, copy=False)


_CAT_CACHE_LABELS = 256  # label sets up to this size have their dtype cached


def _categorical(arr: np.ndarray, c: Col) -> pd.Categorical:
    """An object array of text (None: missing) → Categorical; TypeError if a value is
    not text. ``pd.factorize`` is 3-4x faster than ``pd.Categorical(arr)``, and a
    cached dtype saves building one per batch."""
    codes, uniques = pd.factorize(arr, sort=True)
    if not all(type(u) is str for u in uniques):
        raise TypeError("not text")
    c.no_nulls = not (codes < 0).any()  # a None has no code
    if len(uniques) > _CAT_CACHE_LABELS:
        return pd.Categorical.from_codes(codes, pd.Index(uniques, dtype=object), validate=False)
    key = tuple(uniques)
    dtype = c.cat_dtypes.get(key)
    if dtype is None:
        if len(c.cat_dtypes) >= 64:
            c.cat_dtypes.clear()
        dtype = c.cat_dtypes[key] = pd.CategoricalDtype(pd.Index(uniques, dtype=object))
    if c.convert is None:
        c.cat_last = ({u: i for i, u in enumerate(uniques)}, dtype)
    return pd.Categorical.from_codes(codes, dtype=dtype, validate=False)


def _categorical_as_last(vals: Sequence[Any], c: Col) -> pd.Categorical | None:
    """The batch as a Categorical when it holds exactly the last batch's labels, each
    value one of them (a feed's steady symbols): codes by one dict look-up per value, in
    C, and the last dtype; what :func:`_categorical` gives for it, without factorizing.
    None when that does not hold (a new label, a missing value, a label left out):
    factorize then. Only for values as decoded (no ``convert``): a JSON value equal to
    a label is that text."""
    last = c.cat_last
    if last is None:
        return None
    codes_of, dtype = last
    try:
        codes = np.fromiter(map(codes_of.__getitem__, vals), dtype=np.intp, count=len(vals))
    except (KeyError, TypeError):  # not a label (None, a new label, a number, a list)
        return None
    if not np.bincount(codes, minlength=len(codes_of)).all():  # a label left out
        return None
    c.no_nulls = True  # every value was a label
    return pd.Categorical.from_codes(codes, dtype=dtype, validate=False)


def _floats_to_ns(x: np.ndarray, unit: str | None) -> np.ndarray:
    """Epoch numbers as float64 (NaN = null) → int64 ns (NaT for null).

    The unit comes from the magnitude when ``unit`` is None. Seconds and
    milliseconds are rounded to whole microseconds (a float64 holds no more), so
    ``1534614057.321`` s is exactly ``…57.321``. Raises OverflowError out of range.
    """
    nan = np.isnan(x)
    xs = np.where(nan, 0.0, x)
    if unit is not None:
        per_us = np.full(xs.shape, 1e6 / (EPOCH_UNITS[unit] / 1e3))
    else:
        a = np.abs(xs)
        per_us = np.where(a < 1e11, 1e6, np.where(a < 1e14, 1e3, np.where(a < 1e17, 1.0, 1e-3)))
    is_ns = per_us < 1.0
    us = np.round(xs * np.where(is_ns, 1.0, per_us))
    if np.any(np.abs(np.where(is_ns, us / 1000.0, us)) >= 9.2e15) or not np.isfinite(us).all():
        raise OverflowError("epoch value out of range")
    out = np.where(is_ns, us.astype(np.int64), us.astype(np.int64) * 1000)
    out[nan] = _NAT
    return out


def _bucket(a: int) -> int:
    """The epoch unit guessed from a magnitude ``a >= 0``, as nanoseconds per unit."""
    return 10**9 if a < 10**11 else 10**6 if a < 10**14 else 10**3 if a < 10**17 else 1


def _ints_to_ns(x: np.ndarray, unit: str | None) -> np.ndarray:
    if len(x):  # the common batch: one unit throughout, checked from its bounds
        lo, hi = int(x.min()), int(x.max())
        if unit is not None:
            m = EPOCH_UNITS[unit]
        elif lo >= 0 and _bucket(lo) == _bucket(hi):
            m = _bucket(hi)
        else:
            m = 0
        if m and lo * m >= -(2**63) and hi * m < 2**63:
            return x * m
    if unit is not None:
        mult = np.full(x.shape, EPOCH_UNITS[unit], dtype=np.int64)
    else:
        a = np.abs(x)
        mult = np.where(
            a < 10**11, 10**9, np.where(a < 10**14, 10**6, np.where(a < 10**17, 10**3, 1))
        ).astype(np.int64)
    with np.errstate(over="ignore"):
        out = x * mult
    # overflow check: dividing back must give the input
    ok = (out // mult) == x
    if not ok.all():
        raise OverflowError("epoch value out of range")
    return out


def _dt_one(v: Any, unit: str | None) -> int:
    if isinstance(v, bool):
        raise TypeError("a bool is not a time")
    if isinstance(v, int):
        return int(_ints_to_ns(np.array([v], dtype=np.int64), unit)[0])
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("not a finite number")
        return int(_floats_to_ns(np.array([v]), unit)[0])
    if isinstance(v, str):
        s = v.strip()
        try:
            num: int | float = int(s)
        except ValueError:
            try:
                num = float(s)
            except ValueError:
                num = None  # type: ignore[assignment]
        if num is not None and not (isinstance(num, float) and not math.isfinite(num)):
            return _dt_one(num, unit)
        ts = pd.Timestamp(s)
        if ts is pd.NaT:
            raise ValueError("not a time")
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return int(ts.as_unit("ns").value)
    raise TypeError(f"a {type(v).__name__} is not a time")


def _strings_to_ns(vals: Sequence[Any], unit: str | None, has_null: bool) -> np.ndarray:
    """Vectorized: ISO-8601 strings, else numeric epoch strings; raises if neither fits all."""
    try:
        idx = pd.to_datetime(pd.Index(vals, dtype=object), utc=True, format="ISO8601")
        return idx.as_unit("ns").asi8
    except (ValueError, TypeError):
        pass
    if not has_null:
        try:
            return _ints_to_ns(np.array(vals, dtype=np.int64), unit)
        except (ValueError, TypeError):
            pass
    return _floats_to_ns(np.array(vals, dtype=np.float64), unit)


def _to_datetime(vals: Sequence[Any], c: Col, bad: dict[int, str]) -> Any:
    unit, tz = datetime_parts(c.type)
    ns: np.ndarray | None = None
    kinds = set(map(type, vals))
    c.no_nulls = kinds <= {int}
    try:
        if kinds <= {int}:
            ns = _ints_to_ns(np.array(vals, dtype=np.int64), c.unit)
        elif kinds <= {int, float, type(None)}:
            ns = _floats_to_ns(np.array(vals, dtype=np.float64), c.unit)
        elif kinds <= {str, type(None)}:
            ns = _strings_to_ns(vals, c.unit, None in kinds)
    except (ValueError, TypeError, OverflowError):
        ns = None
    if ns is None:
        out = _fallback(vals, c, bad, lambda v: _dt_one(v, c.unit), _NAT)
        ns = np.array(out, dtype=np.int64)
    idx = pd.DatetimeIndex(ns.view("M8[ns]"))  # ~8x cheaper than Series.dt.tz_localize
    if tz is not None:
        idx = idx.tz_localize("UTC")
        if tz != "UTC":
            idx = idx.tz_convert(tz)
    if unit != "ns":
        idx = idx.as_unit(unit)
    return idx.array
