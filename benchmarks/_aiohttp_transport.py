"""livestream's client transport rebuilt on aiohttp, for comparison only (``python -m
benchmarks feed``): the same ``connect(url, on_message, on_close, ...)`` and the same
``WebSocket`` methods a :class:`~livestream.client.feed.FeedConnection` calls, so a feed
can run on aiohttp unchanged (the benchmark swaps ``livestream.client.feed.ws_connect``).

aiohttp delivers messages by ``await ws.receive()``, so one reader task per connection
hands each message to ``on_message`` or, given ``on_texts``, collects the text messages
that are ready (aiohttp has decoded them: they are encoded back to UTF-8 bytes, as the
feed's batch handler takes them) and hands them on as one list once the loop turns, as
livestream's transport does after a read. Not part of the package: picows was chosen (see
docs/decisions.md, "Client transport").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any


class AiohttpWebSocket:
    """The subset of :class:`livestream.client.transport.WebSocket` a feed uses."""

    def __init__(self, session: Any, ws: Any, on_message: Callable[[Any], Any],
                 on_close: Callable[[Any], Any] | None,
                 on_texts: Callable[[list[bytes]], Any] | None = None) -> None:
        self._session, self._ws = session, ws
        self._on_message, self._on_close = on_message, on_close
        self._on_texts = on_texts
        self._texts: list[bytes] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.subprotocol = ws.protocol
        self._done = asyncio.get_running_loop().create_future()
        self._writes: set[asyncio.Future] = set()  # sends in flight (aiohttp's are coroutines)
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        import aiohttp

        text, binary = aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY
        ws, on_message, texts = self._ws, self._on_message, self._texts
        loop = asyncio.get_running_loop()
        try:
            while True:
                msg = await ws.receive()
                if msg.type is text and self._on_texts is not None:
                    if not texts:
                        loop.call_soon(self._flush)
                    texts.append(msg.data.encode())
                elif msg.type is text or msg.type is binary:
                    self._flush()
                    on_message(msg.data)
                else:
                    break
            self._flush()
            self.close_code = ws.close_code
        finally:
            with contextlib.suppress(Exception):
                await self._session.close()
            if not self._done.done():
                self._done.set_result(None)
            if self._on_close is not None:
                self._on_close(self)

    def _flush(self) -> None:
        if self._texts:
            texts = self._texts[:]
            self._texts.clear()  # the reader holds this list: emptied, not replaced
            assert self._on_texts is not None
            self._on_texts(texts)

    @property
    def closed(self) -> bool:
        return self._ws.closed

    def send(self, data: str | bytes) -> None:
        send = self._ws.send_str if isinstance(data, str) else self._ws.send_bytes
        self._spawn(send(data))

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        self._spawn(self._ws.close(code=code, message=(reason or "").encode()))

    def _spawn(self, coro: Any) -> None:
        fut = asyncio.ensure_future(coro)
        self._writes.add(fut)
        fut.add_done_callback(self._writes.discard)

    def abort(self) -> None:
        self._task.cancel()

    def abort_soon(self, delay: float = 0.01) -> None:
        asyncio.get_running_loop().call_later(delay, self.abort)

    def abort_offloop(self) -> None:
        pass

    async def wait_closed(self) -> None:
        await asyncio.shield(self._done)


async def connect(url: str, on_message: Callable[[Any], Any],
                  on_close: Callable[[Any], Any] | None = None, *,
                  headers: Any = None, subprotocols: Any = None, ssl: Any = None,
                  connect_timeout: float | None = 10.0, ping_interval: float | None = None,
                  ping_timeout: float | None = None, max_message_size: int = 64 << 20,
                  on_texts: Callable[[list[bytes]], Any] | None = None,
                  **_ignored: Any) -> AiohttpWebSocket:
    """What :func:`livestream.client.transport.connect` does, on aiohttp."""
    import aiohttp

    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(
            url, headers=headers, protocols=tuple(subprotocols or ()),
            ssl=ssl if url.startswith("wss://") else None,
            timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
            heartbeat=ping_interval, max_msg_size=max_message_size, autoping=True,
        )
    except BaseException:
        await session.close()
        raise
    return AiohttpWebSocket(session, ws, on_message, on_close, on_texts)
