"""The publish path reads each batch's columns once and encodes each update once.

``Topic.publish`` hands the column arrays it read to its log and to the update
(``Update.arrays``), and the server's encoder uses them: what reaches a
subscriber must be exactly the conformed batch, whatever order or dtypes the
publisher's frame had.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from livestream.core.schema import STRING_DTYPE, column_arrays
from livestream.core.topic import Topic
from livestream.protocol import data_header, encode_data, unpack_binary
from livestream.protocol.codec import read_arrow, table_to_frame


def _decoded(topic: Topic, update) -> pd.DataFrame:
    header = data_header(update.kind, topic.name, update.epoch, update.offset, update.next,
                         update.rows, update.ts)
    _, payload = unpack_binary(encode_data(header, update.frame, topic.schema, "arrow",
                                           update.arrays))
    return table_to_frame(read_arrow(payload), topic.schema)


def test_a_batch_in_another_column_order_and_dtype_is_sent_as_the_schema_says():
    t = Topic("t")
    t.publish(pd.DataFrame({"a": [1, 2], "s": pd.array(["x", "y"], dtype=STRING_DTYPE)}))
    u = t.publish(pd.DataFrame({"s": ["p", None], "a": np.array([3, 4], dtype="int32")}))
    assert list(u.arrays) == ["a", "s"]
    got = _decoded(t, u)
    assert got["a"].tolist() == [3, 4] and got["a"].dtype == "int64"
    assert got["s"].iloc[0] == "p" and pd.isna(got["s"].iloc[1])
    assert t.frame()["a"].tolist() == [1, 2, 3, 4]


def test_updates_not_made_by_publish_read_their_arrays_from_their_frame():
    t = Topic("t")
    for k in range(3):
        t.publish(pd.DataFrame({"a": [k], "f": [k * 0.5]}))
    resume = t.since(t.epoch, 1).update
    assert resume is not None and "arrays" not in resume.__dict__
    assert list(resume.arrays) == ["a", "f"]
    pd.testing.assert_frame_equal(_decoded(t, resume), t.frame().iloc[1:].reset_index(drop=True))


def test_keyed_upserts_send_the_deduplicated_rows():
    t = Topic("q", key="k")
    t.publish(pd.DataFrame({"k": ["a", "b"], "v": [1.0, 2.0]}))
    u = t.publish(pd.DataFrame({"k": ["a", "a"], "v": [3.0, 4.0]}))
    got = _decoded(t, u)
    assert got["k"].tolist() == ["a"] and got["v"].tolist() == [4.0]


def test_column_arrays_share_the_frames_data():
    df = pd.DataFrame({"a": np.arange(3), "c": pd.Categorical(["x", "y", "x"])})
    a, c = column_arrays(df)
    assert isinstance(a, np.ndarray) and a.tolist() == [0, 1, 2]
    assert isinstance(c, pd.Categorical) and c.tolist() == ["x", "y", "x"]
