"""Column conversion for Bokeh: every numeric column becomes a binary-friendly array.

Bokeh serialises ``float64``/``float32``/``int32`` numpy arrays as binary, but
falls back to JSON lists for int64 values outside int32, object columns and
datetimes. Charts therefore send every x/y value as ``float64`` (datetimes as
milliseconds since the epoch, the unit of Bokeh's datetime axes; NaT as NaN),
and only bar-chart factors travel as strings.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_MS_PER_UNIT = {"s": 1e3, "ms": 1.0, "us": 1e-3, "ns": 1e-6}


def is_datetime(s: pd.Series) -> bool:
    """Whether a column holds datetimes (naive or tz-aware)."""
    return isinstance(s.dtype, pd.DatetimeTZDtype) or (
        isinstance(s.dtype, np.dtype) and s.dtype.kind == "M"
    )


def to_float64(s: pd.Series) -> np.ndarray:
    """A column as a contiguous float64 array.

    Datetimes become milliseconds since the epoch; tz-aware datetimes keep their
    wall-clock time (a ``America/New_York`` 09:30 shows as 09:30). Missing values
    become NaN.
    """
    dt = s.dtype
    if isinstance(dt, pd.DatetimeTZDtype):
        s = s.dt.tz_localize(None)
        dt = s.dtype
    if isinstance(dt, np.dtype) and dt.kind in "Mm":
        unit = np.datetime_data(dt)[0]
        raw = s.to_numpy()
        i8 = raw.view("i8")
        out = i8.astype(np.float64) * _MS_PER_UNIT.get(unit, 1e-6)
        nat = np.isnat(raw)
        if nat.any():
            out[nat] = np.nan
        return out
    if isinstance(dt, np.dtype) and dt == np.float64:
        return np.ascontiguousarray(s.to_numpy())
    return np.ascontiguousarray(s.to_numpy(dtype=np.float64, na_value=np.nan))


def to_labels(s: pd.Series) -> list[str]:
    """A column as a list of strings (bar-chart factors)."""
    return ["" if v is None or (isinstance(v, float) and v != v) else str(v) for v in s.tolist()]
