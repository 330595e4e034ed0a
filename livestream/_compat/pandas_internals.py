"""pandas internals: a DataFrame from column arrays, without re-checking them.

``DataFrame._from_arrays`` (private) builds a frame from 1-D arrays without the
public constructor's per-column sanitising, ~4x cheaper for the small batches of
a feed stream. The probe below runs at import; should a pandas version lose or
change it, a warning is logged once and :func:`frame_from_arrays` uses the
public constructor (:func:`frame_from_arrays_public`), which gives the same frame.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["FAST_FRAMES", "frame_from_arrays", "frame_from_arrays_public"]

log = logging.getLogger("livestream")


def frame_from_arrays_public(arrays: Sequence[Any], columns: pd.Index, n: int) -> pd.DataFrame:
    """The DataFrame of ``n`` rows with ``arrays`` as ``columns``, by the public constructor."""
    return pd.DataFrame(dict(zip(columns, arrays, strict=True)), index=pd.RangeIndex(n),
                        columns=columns, copy=False)


def _frame_from_arrays_fast(arrays: Sequence[Any], columns: pd.Index, n: int) -> pd.DataFrame:
    return pd.DataFrame._from_arrays(  # type: ignore[attr-defined]
        list(arrays), columns=columns, index=pd.RangeIndex(n), verify_integrity=False)


def _probe() -> bool:
    """Whether ``_from_arrays`` exists and builds what the constructor builds."""
    cols = pd.Index(["f", "s", "c"])
    arrays = [np.array([1.5, 2.5]), pd.array(["a", None], dtype="string"),
              pd.Categorical(["x", "y"])]
    try:
        fast = _frame_from_arrays_fast(arrays, cols, 2)
        pd.testing.assert_frame_equal(fast, frame_from_arrays_public(arrays, cols, 2))
    except Exception as exc:  # an upgrade changed or removed it
        log.warning("livestream: pandas %s: DataFrame._from_arrays is not usable (%r); "
                    "feed batches use the public DataFrame constructor (slower)",
                    pd.__version__, exc)
        return False
    return True


#: Whether the fast path passed its probe on this pandas.
FAST_FRAMES: bool = _probe()

frame_from_arrays = _frame_from_arrays_fast if FAST_FRAMES else frame_from_arrays_public
frame_from_arrays.__doc__ = (
    "A DataFrame of ``n`` rows from 1-D ``arrays`` named by ``columns``, without copying "
    "or re-checking them (the fast path when :data:`FAST_FRAMES`).")
