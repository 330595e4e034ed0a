"""A keyed table: rows identified by one or more key columns, updated by upsert.

Used by keyed topics on the server and by subscriptions to them on the client, so
both sides apply upserts with one implementation. Rows keep the position where
their key first appeared; an upsert overwrites in place (O(batch), no concat).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import SchemaError
from .schema import Schema
from .window import ColumnWindow


class KeyedTable:
    """The current row for every key."""

    def __init__(self, schema: Schema, key: Sequence[str]) -> None:
        key = tuple(key)
        if not key:
            raise SchemaError("a keyed table needs at least one key column")
        for k in key:
            if k not in schema.names:
                raise SchemaError(f"key column {k!r} is not in the schema {schema.names}", column=k)
        self.schema = schema
        self.key = key
        self._rows = ColumnWindow(schema, max_rows=None)
        self._pos: dict[object, int] = {}

    def __len__(self) -> int:
        return len(self._pos)

    def _keys(self, df: pd.DataFrame) -> list:
        if len(self.key) == 1:
            return df[self.key[0]].tolist()
        return list(zip(*(df[k].tolist() for k in self.key), strict=True))

    def dedupe(self, df: pd.DataFrame) -> pd.DataFrame:
        """Keep the last row of each key in a batch (batch order otherwise kept)."""
        dup = df.duplicated(subset=list(self.key), keep="last")
        if dup.any():
            df = df.loc[~dup.to_numpy()].reset_index(drop=True)
        return df

    def upsert(self, df: pd.DataFrame) -> pd.DataFrame:
        """Apply a conformed batch; returns the rows applied (deduplicated by key)."""
        df = self.dedupe(df)
        if len(df) == 0:
            return df
        keys = self._keys(df)
        pos = self._pos
        existing_rows = []
        existing_pos = []
        new_rows = []
        for i, k in enumerate(keys):
            p = pos.get(k)
            if p is None:
                new_rows.append(i)
            else:
                existing_rows.append(i)
                existing_pos.append(p)
        if existing_rows:
            self._rows.overwrite(
                np.asarray(existing_pos), df.iloc[existing_rows].reset_index(drop=True)
            )
        if new_rows:
            start = len(self._rows)
            fresh = df.iloc[new_rows].reset_index(drop=True) if len(new_rows) != len(df) else df
            self._rows.append(fresh)
            for j, i in enumerate(new_rows):
                pos[keys[i]] = start + j
        return df

    def changed(self, df: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``df`` whose key is new or whose values differ from the table's."""
        df = self.dedupe(df)
        if len(df) == 0 or not self._pos:
            return df
        keys = self._keys(df)
        positions = np.array([self._pos.get(k, -1) for k in keys])
        known = positions >= 0
        if not known.any():
            return df
        current = self.to_frame().iloc[positions[known]].reset_index(drop=True)
        candidate = df.loc[known].reset_index(drop=True)
        differs = np.zeros(len(candidate), dtype=bool)
        for name in self.schema.names:
            a = candidate[name]
            b = current[name]
            both_na = (a.isna() & b.isna()).to_numpy()
            neq = (a.astype(object) != b.astype(object)).to_numpy()
            differs |= neq & ~both_na
        keep = ~known
        keep[np.flatnonzero(known)[differs]] = True
        return df.loc[keep].reset_index(drop=True)

    def to_frame(self) -> pd.DataFrame:
        """The table, one row per key, in first-seen order."""
        return self._rows.to_frame()

    def clear(self) -> None:
        self._rows.reset(0)
        self._pos.clear()
