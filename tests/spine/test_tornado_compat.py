"""The server's reliances on Tornado internals (livestream/server/_tornado_compat.py) hold on the
installed Tornado, and a Tornado that breaks one stops the server at start, loudly."""

from __future__ import annotations

import asyncio

import pytest
from spine_util import async_test
from tornado.iostream import BaseIOStream

import livestream as ls
from livestream.server import _tornado_compat


@async_test()
async def test_every_tornado_reliance_holds_on_the_installed_version(monkeypatch):
    monkeypatch.setattr(_tornado_compat, "_checked", False)
    assert _tornado_compat._static_problems() == []
    assert _tornado_compat._probe() == []
    _tornado_compat.check()


def test_reading_the_send_queue_of_a_stream_without_the_buffer_raises():
    class NotAStream:
        pass

    with pytest.raises(AttributeError):  # not a silent 0, which would disable the bound
        _tornado_compat.unflushed(NotAStream())


def test_a_tornado_that_renamed_the_write_buffer_stops_the_server_at_start(monkeypatch):
    original = BaseIOStream.__init__

    def renamed(self, *args, **kwargs):  # what an upgrade renaming the attribute looks like
        original(self, *args, **kwargs)
        self._pending_writes = self.__dict__.pop("_write_buffer")

    monkeypatch.setattr(BaseIOStream, "__init__", renamed)
    monkeypatch.setattr(_tornado_compat, "_checked", False)
    with pytest.raises(RuntimeError, match="_write_buffer") as e:
        asyncio.run(_serve_now())
    assert "does not support Tornado" in str(e.value)


async def _serve_now() -> None:
    srv = ls.serve(port=0)
    await srv.aclose()
