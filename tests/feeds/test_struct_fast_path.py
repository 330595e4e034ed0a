"""The struct fast path (msgspec, :mod:`livestream.client.feeds.fastpath`) gives exactly the
windows the general path (``orjson.loads`` into a dict) gives, on the same messages over a
real socket: same rows, dtypes and values, the same dead letters, missing counts and
feed-level counters; and it steps aside where it does not apply."""

from __future__ import annotations

import dataclasses
import json
import random

import pandas as pd
import pytest
from conftest import run, until
from fakefeed import FakeExchange

from livestream.client.feed import open_feed
from livestream.client.feeds import fastpath
from livestream.client.feeds.parse import Column, RowParser
from livestream.client.feeds.stream import DEAD_LETTER_TEXT, FeedStream

OMIT = object()  # the field is left out of the message

# values as feeds send them, and values a stream must reject or count as missing
VALUES = [
    "43012.50", 43012.5, 1, 0, -0.0, "-0.0", "-0", "nan", "-Infinity", "1e5", " 2.5", "1_000",
    "abc", "", None, True, False, [1, 2], {"x": 1}, 2**70, 2**63, -(2**63), 2**63 - 1,
    1_700_000_000_123, "1700000000123", "2024-01-02T03:04:05Z", "BTC-USD", "é✓ \u0000",
    "seq:42", 1.5e300, OMIT,
]
TYPES = ["trade"] * 8 + ["quote", "error", "Trade", 5, None, ["trade"], {"t": 1}, OMIT]
# whole messages that are not one object of the usual shape
ODD_TEXTS = [
    "hello", "[1, 2]", "{}", "null", '"trade"', "{\"type\": \"trade\", \"p\": NaN}",
    '{"type": "trade", "p": "1", "p": "2", "s": "A"}',  # duplicate keys: the last wins
    '{"type": "quote", "type": "trade", "p": "3"}',
    '{"type": "trade", "deep": ' + "[" * 300 + "]" * 300 + ', "p": "4"}',
    '{"type": "trade", "p": "5", "d": {"p": "6", "book": {"bid": "7"}}, "extra": {"a": [1]}}',
    '{"type": "trade", "p": 1e400}',  # out of range: not JSON for orjson, nor for a read field
    '{"type": "trade", "p": 18446744073709551616}',
    '{"type": "trade", "p": "\\ud800"}',  # a lone surrogate
    '{"type": "trade", "q": 1, "status": "error"}',
]


def _value(rng: random.Random, pool: list) -> object:
    return pool[rng.randrange(len(pool))]


def _fields(rng: random.Random, pool: list, odd: float) -> dict:
    """The usual fields of a trade, each drawn from ``pool`` instead with chance ``odd``."""
    usual = {"p": f"{43000 + rng.randrange(1000) / 100:.2f}", "q": rng.randrange(100) / 7,
             "T": 1_700_000_000_000 + rng.randrange(10**6), "s": rng.choice(["BTC", "ETH"]),
             "side": rng.choice(["buy", "sell"]), "n": rng.randrange(50),
             "id": f"seq:{rng.randrange(10**6)}", "ok": rng.random() < 0.5}
    return {k: _value(rng, pool) if rng.random() < odd else v for k, v in usual.items()}


def _message(rng: random.Random) -> str:
    if rng.random() < 0.06:
        return ODD_TEXTS[rng.randrange(len(ODD_TEXTS))]
    msg: dict = {}
    fields = {"type": _value(rng, TYPES)}
    # mostly the usual values, so that most messages take the fast path
    fields.update(_fields(rng, VALUES, 0.25))
    r = rng.random()
    if r < 0.6:
        fields["d"] = {"p": _value(rng, VALUES) if rng.random() < 0.3 else "1.5",
                       "v": _value(rng, VALUES) if rng.random() < 0.3 else "X",
                       "book": ({"bid": _value(rng, VALUES)} if rng.random() < 0.7
                                else _value(rng, VALUES))}
    elif r < 0.8:
        fields["d"] = _value(rng, VALUES)
    msg.update(fields)
    if rng.random() < 0.1:
        msg["data"] = [{"p": _value(rng, VALUES)}, {"p": "2.5"}]
    return json.dumps(_strip(msg))  # stdlib: writes integers beyond 64 bits as they are


# values msgspec takes into the Struct as they are: a list of mostly such messages decodes
# as a whole (the batch path); the odd ones among them send a list the per-message way
CLEAN_VALUES = ["43012.50", 43012.5, 1, 0, -0.0, "nan", "", None, True, False, 2**63 - 1,
                -(2**63), 1_700_000_000_123, "1700000000123", "2024-01-02T03:04:05Z",
                "é✓ \u0000", 1.5e300, OMIT]


def _clean_message(rng: random.Random) -> str:
    msg: dict = {"type": _value(rng, ["trade"] * 6 + ["quote", "error", 5, None, OMIT])}
    msg.update(_fields(rng, CLEAN_VALUES, 0.3))
    if rng.random() < 0.8:
        msg["d"] = {"p": _value(rng, CLEAN_VALUES), "v": _value(rng, CLEAN_VALUES),
                    "book": {"bid": _value(rng, CLEAN_VALUES)} if rng.random() < 0.8 else None}
    return json.dumps(_strip(msg))


def _strip(v: object) -> object:
    """``v`` without the fields set to OMIT."""
    if isinstance(v, dict):
        return {k: _strip(x) for k, x in v.items() if x is not OMIT}
    if isinstance(v, list):
        return [_strip(x) for x in v if x is not OMIT]
    return v


# (stream options, feed options, whether the fast path applies)
SPECS = {
    "trades": (dict(select={"type": "trade"},
                    columns={"price": ("p", float), "qty": ("q", float),
                             "time": ("T", "datetime"), "symbol": ("s", "category"),
                             "side": "category", "n": ("n", int)}), {}, True),
    "nested, required, converter, select key as a column": (
        dict(select={"type": "trade"},
             columns={"price": ("d.p", float), "bid": ("d.book.bid", "Float64"),
                      "venue": ("d.v", str), "seq": Column(source="id", type=int,
                                                            convert="number"),
                      "type": "string", "ok": ("ok", "boolean"),
                      "float32": ("q", "float32"), "naive": ("T", "datetime64[ns]")},
             required=["price"]), {}, True),
    "no select, no error check": (
        dict(columns={"p": float, "s": str, "ok": "boolean", "t": ("T", "datetime64[ns]"),
                      "seq": ("n", "Int64")}), {"ack_error": False}, True),
    "path and envelope (general path only)": (
        dict(select={"type": "trade"}, path="data", columns={"p": float},
             envelope={"pair": "s"}), {}, False),
}


def _counting_plans(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Count the messages the fast path's decoder sees and takes, the lists of text
    messages its batch handler took to their end, and the runs it took after a message
    the Struct refused."""
    seen = {"calls": 0, "ok": 0, "lists": 0, "runs_after_refusal": 0}
    real = fastpath.plan
    real_batch = FeedStream._make_fast_batch

    def make_fast_batch(self):
        handler = real_batch(self)

        def counted(texts, start):
            others, taken = handler(texts, start)
            seen["lists"] += taken > 0 and start + taken == len(texts)
            seen["runs_after_refusal"] += taken > 0 and start > 0
            return others, taken

        return counted

    monkeypatch.setattr(FeedStream, "_make_fast_batch", make_fast_batch)

    def plan(parser):
        p = real(parser)
        if p is None:
            return None
        decode = p.decode

        def counted(raw):
            seen["calls"] += 1
            out = decode(raw)
            seen["ok"] += 1
            return out

        return dataclasses.replace(p, decode=counted)

    monkeypatch.setattr(fastpath, "plan", plan)
    return seen


def _sorted_categories(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].cat.reorder_categories(sorted(df[c].cat.categories))
    return df


def _state(feed, st) -> dict:
    s, fs = st.stats, feed.stats
    return {
        "rows": len(st), "messages": s.messages, "errors": s.errors, "extra": dict(s.extra),
        "dropped": s.dropped, "missing": dict(st.missing_counts),
        "dead": [(d.kind, d.reason, d.message) for d in st.dead_letters],
        "feed": (fs.messages, fs.not_json, fs.feed_errors, fs.last_feed_error),
    }


# a float32 column: numpy warns when a value is beyond float32 (both paths give inf)
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("mix", ["random", "mostly clean"])
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("spec", list(SPECS))
def test_the_fast_path_and_the_general_path_give_the_same_window(spec, seed, mix, monkeypatch):
    """``random``: most lists of messages hold an odd one, so most messages go the
    per-message way; ``mostly clean``: groups of messages the Struct takes, sent apart,
    so that whole lists go the batch way, and one group with the odd ones."""
    stream_kw, feed_kw, applies = SPECS[spec]
    seen = _counting_plans(monkeypatch)
    rng = random.Random(seed)
    if mix == "random":
        groups = [[_message(rng) for _ in range(600)] + ODD_TEXTS]
    else:
        groups = [[_clean_message(rng) for _ in range(150)] for _ in range(4)]
        groups[2] += ODD_TEXTS
        rng.shuffle(groups[2])
    if spec.startswith("nested"):  # "p" is not read: see the last test, the one difference
        groups = [[t for t in g if "1e400" not in t] for g in groups]
    texts = [t for g in groups for t in g]

    async def main():
        f = await FakeExchange().start()
        fast_feed = open_feed(f.url, batch_interval=0.005, **feed_kw)
        general_feed = open_feed(f.url, batch_interval=0.005, **feed_kw)
        fast = fast_feed.stream(**stream_kw, window=10_000)
        general = general_feed.stream(**stream_kw, window=10_000)
        general.use_fast_path = False
        general._refresh_feed()
        await fast_feed.opened()
        await general_feed.opened()
        await until(lambda: len(f.clients) == 2, "both connected")
        sent = 0
        for g in groups:
            for t in g:
                f.send_raw(t)
            sent += len(g)
            await until(lambda n=sent: fast_feed.stats.messages
                        == general_feed.stats.messages == n, "every message received by both")
        fast._flush()
        general._flush()
        a, b = _state(fast_feed, fast), _state(general_feed, general)
        # a message that is not JSON is dead-lettered when it arrives, a bad value when its
        # batch is converted: the order *between* kinds follows the batch timer's timing
        a["dead"].sort(key=lambda d: d[0])
        b["dead"].sort(key=lambda d: d[0])
        for i, (x, y) in enumerate(zip(a["dead"], b["dead"], strict=True)):
            assert x == y, f"dead letter {i}"
        assert a == b
        # a category column's categories come in the order its batches first held them,
        # and the two feeds' batches end at different times: compare them as sets
        pd.testing.assert_frame_equal(_sorted_categories(fast.df),
                                      _sorted_categories(general.df), check_exact=True)
        assert list(fast.df.dtypes) == list(general.df.dtypes)
        if applies:
            # the fast path took most messages, and sent the others to the general path
            # (a list holding an odd message is decoded again, one message at a time)
            assert seen["calls"] >= len(texts)
            assert 0.2 * len(texts) < seen["ok"] < seen["calls"]
            assert len(fast) > 20 and b["dead"]
            if mix == "mostly clean":
                assert seen["lists"] >= 3
        else:
            assert seen["calls"] == 0 and seen["lists"] == 0
        fast_feed.close()
        general_feed.close()
        await f.stop()

    run(main())


def test_rows_keep_the_order_of_their_messages_across_the_two_paths():
    """Messages the fast path takes and messages it hands to the general path (a nested
    object that is text, an array value) interleave in one batch in message order."""
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, batch_interval=0.2)
        st = feed.stream({"type": "t"}, columns={"i": int, "v": ("d.v", str)})
        await feed.opened()
        await until(lambda: len(f.clients) == 1, "connected")
        for i in range(60):
            d = {"v": f"x{i}"} if i % 3 else ("text" if i % 2 else {"v": [i]})
            f.send_raw(json.dumps({"type": "t", "i": i, "d": d}))
        await until(lambda: len(st) == 60, "60 rows")
        assert st.df["i"].tolist() == list(range(60))
        want = [f"x{i}" if i % 3 else (None if i % 2 else f"[{i}]") for i in range(60)]
        assert [None if pd.isna(v) else v for v in st.df["v"]] == want
        feed.close()
        await f.stop()

    run(main())


def test_the_batch_handler_goes_on_after_a_message_the_struct_refuses(monkeypatch):
    """In a burst, a message the Struct refuses (a nested object sent as text, or an
    array where a value belongs) is decided the per-message way between two runs of the
    batch handler; the rows keep their messages' order."""
    seen = _counting_plans(monkeypatch)

    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, batch_interval=0.5)
        st = feed.stream({"type": "t"}, columns={"i": int, "v": ("d.v", str)})
        await feed.opened()
        await until(lambda: len(f.clients) == 1, "connected")
        odd = {40: "text", 80: {"v": [80]}, 120: "text"}
        for i in range(160):
            f.send_raw(json.dumps({"type": "t", "i": i, "d": odd.get(i, {"v": f"x{i}"})}))
        await until(lambda: len(st) == 160, "160 rows")
        assert st.df["i"].tolist() == list(range(160))
        want = [None if i in (40, 120) else "[80]" if i == 80 else f"x{i}" for i in range(160)]
        assert [None if pd.isna(v) else v for v in st.df["v"]] == want
        feed.close()
        await f.stop()

    run(main())
    assert seen["runs_after_refusal"] >= 1


@pytest.mark.parametrize("kw", [
    dict(select=lambda m: True, columns={"p": float}),
    dict(select={"type": "trade", "venue": "x"}, columns={"p": float}),
    dict(select={"type": 5}, columns={"p": float}),
    dict(select={"a.b": "x"}, columns={"p": float}),
    dict(path="data", columns={"p": float}),
    dict(path="data", envelope={"pair": "s"}, columns={"p": float}),
    dict(columns={"p": (0, float)}),
    dict(columns={"p": ("a.0", float)}),
    dict(columns={"a": ("k", float), "b": ("k.c", float)}),
    dict(select={"k": "x"}, columns={"b": ("k.c", float)}),
    dict(columns=None),
])
def test_the_fast_path_steps_aside_where_it_does_not_apply(kw):
    assert fastpath.plan(RowParser(**kw)) is None


def test_the_plan_reads_nested_fields_and_the_selector():
    p = fastpath.plan(RowParser(select={"type": "trade"},
                                columns={"p": float, "x": ("k.c", str), "y": ("k.d.e", int)}))
    assert p is not None and p.want == "trade"
    m = p.decode('{"type": "trade", "p": "1.5", "k": {"c": "z", "d": null}, "other": [1]}')
    values = [eval(e, {"m": m}) for e in p.reads]  # the expressions the handler inlines
    assert values == ["1.5", "z", None]
    assert getattr(m, p.select_attr) == "trade"
    for bad in ('{"p": [1]}', '{"k": "text"}', '{"p": 18446744073709551616}', "[1]", "x"):
        with pytest.raises(Exception):  # noqa: B017 (msgspec's errors: the general path decides)
            p.decode(bad)


async def _fast_and_general(f: FakeExchange, columns: dict) -> tuple:
    """Two connected feeds on ``f``, each with a stream of ``type == "t"`` messages: one
    on the fast path, one on the general path."""
    feeds = [open_feed(f.url) for _ in range(2)]
    fast, general = (fd.stream({"type": "t"}, columns=columns) for fd in feeds)
    general.use_fast_path = False
    general._refresh_feed()
    for fd in feeds:
        await fd.opened()
    await until(lambda: len(f.clients) == 2, "both connected")
    return feeds, fast, general


def test_a_number_beyond_float64_in_a_field_the_stream_does_not_read():
    """The one documented difference: msgspec skips a field the stream does not read
    without parsing its number, so a message whose *unread* field holds a number beyond
    float64's range (``1e400``, which orjson refuses as not JSON) gives its row on the
    fast path and is a ``not_json`` dead letter on the general path. In a field the
    stream reads, both refuse it."""
    async def main():
        f = await FakeExchange().start()
        feeds, fast, general = await _fast_and_general(f, {"p": float})
        f.send_raw('{"type": "t", "p": "1.5", "unread": 1e400}')
        f.send_raw('{"type": "t", "p": 1e400}')
        f.send_raw('{"type": "t", "p": "2.5"}')
        await until(lambda: len(fast) == 3 - 1 and len(general) == 1, "rows")
        assert fast.df["p"].tolist() == [1.5, 2.5]
        assert general.df["p"].tolist() == [2.5]
        assert fast.stats.extra["not_json"] == 1 and general.stats.extra["not_json"] == 2
        for fd in feeds:
            fd.close()
        await f.stop()

    run(main())


def test_a_batch_ends_after_batch_messages_messages():
    """One read from a busy socket holds many messages; a batch is converted every
    ``batch_messages`` of them even within ``batch_interval`` (here a long one)."""
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, batch_interval=1.0, batch_messages=100)
        st = feed.stream({"type": "t"}, columns={"i": int})
        sizes = []
        st.on_update(lambda sub, frame, kind: sizes.append(len(frame)))
        await feed.opened()
        await until(lambda: len(f.clients) == 1, "connected")
        for i in range(250):
            f.send_raw(json.dumps({"type": "t", "i": i}))
        await until(lambda: len(st) == 250, "250 rows")  # the last 50 after the timer
        # the 101st message ends the first batch before it is taken, and so on
        assert sizes == [100, 100, 50]
        assert st.df["i"].tolist() == list(range(250))
        feed.close()
        await f.stop()

    run(main())


def test_a_text_ping_and_a_feed_error_among_a_burst_of_rows():
    """A list of text messages holding the ping text goes the per-message way (the ping
    is answered, not taken); a feed's error message the stream does not select is
    recorded; the rows around them all arrive, in order."""
    async def main():
        f = await FakeExchange().start()
        feed = open_feed(f.url, ping_match="ping", pong="pong", batch_interval=0.5)
        st = feed.stream({"type": "t"}, columns={"i": int})
        await feed.opened()
        await until(lambda: len(f.clients) == 1, "connected")
        for i in range(300):
            f.send_raw(json.dumps({"type": "t", "i": i}))
            if i == 100:
                f.send_raw("ping")
            if i == 200:
                f.send_raw(json.dumps({"type": "error", "message": "rate limited"}))
        await until(lambda: len(st) == 300, "300 rows")
        await until(lambda: "pong" in f.received_text, "the pong")
        assert st.df["i"].tolist() == list(range(300))
        assert feed.stats.pings_answered == 1 and feed.stats.not_json == 0
        assert feed.stats.feed_errors == 1 and "rate limited" in feed.stats.last_feed_error
        assert st.stats.extra["dead_letters"] == 0
        feed.close()
        await f.stop()

    run(main())


def test_a_long_dead_letter_keeps_its_first_characters_on_either_path():
    """A row of the batch path keeps its message as UTF-8 bytes; its dead letter holds the
    same first DEAD_LETTER_TEXT characters as the general path's (not bytes)."""
    long_text = json.dumps({"type": "t", "i": "not a number", "pad": "é" * 5000},
                           ensure_ascii=False)

    async def main():
        f = await FakeExchange().start()
        feeds, fast, general = await _fast_and_general(f, {"i": int})
        for i in range(20):
            f.send_raw(json.dumps({"type": "t", "i": i}))
        f.send_raw(long_text)
        await until(lambda: fast.dead_letters and general.dead_letters, "the dead letters")
        (a,), (b,) = fast.dead_letters, general.dead_letters
        assert a.message == b.message == long_text[:DEAD_LETTER_TEXT]
        for fd in feeds:
            fd.close()
        await f.stop()

    run(main())
