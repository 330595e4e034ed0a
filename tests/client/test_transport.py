"""The client WebSocket transport (livestream/client/transport.py) on real sockets.

What the adapter adds to picows is checked against a real Tornado server and, where a
server must misbehave (fragment its messages, choose a subprotocol nobody offered, stop
answering), a hand-written one on a raw socket: messages joined from frames, the size
limit per message, subprotocols, close codes both ways, TLS with a private CA, the error
types and words users saw with Tornado's client, cancellation, and dead-peer pings.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import hashlib
import socket
import ssl
import struct
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket
import trustme
from testutil import until
from tornado.httpclient import HTTPClientError

from livestream.client.feed import open_feed
from livestream.client.transport import HandshakeError, WebSocket, connect

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def run(coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
    """Run ``coro`` on a fresh loop, with warnings about unawaited coroutines, destroyed
    tasks and unretrieved exceptions turned into failures."""
    errors: list[Any] = []

    async def main() -> Any:
        asyncio.get_running_loop().set_exception_handler(lambda _l, ctx: errors.append(ctx))
        return await asyncio.wait_for(coro, timeout)

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = asyncio.run(main())
        gc.collect()
    assert errors == [], errors
    return result


def other_tasks() -> set[asyncio.Task]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}


# -- a real Tornado server ---------------------------------------------------------------------


class Echo(tornado.websocket.WebSocketHandler):
    """Echoes messages; ``close CODE REASON`` closes with that code."""

    seen: dict[str, Any]

    def initialize(self, seen: dict[str, Any]) -> None:
        self.seen = seen

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        self.seen["offered"] = list(subprotocols)
        return "livestream.v1" if "livestream.v1" in subprotocols else None

    def open(self) -> None:
        self.seen["headers"] = dict(self.request.headers)

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, str) and message.startswith("close "):
            _, code, reason = message.split(" ", 2)
            self.close(int(code), reason)
            return
        if isinstance(message, str) and message.startswith("big "):
            self.write_message("x" * int(message[4:]))
            return
        self.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        self.seen["close"] = (self.close_code, self.close_reason)


class Forbidden(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_status(403)
        self.finish("no")


async def tornado_server(ssl_ctx: ssl.SSLContext | None = None) -> tuple[Any, int, dict]:
    seen: dict[str, Any] = {}
    app = tornado.web.Application([(r"/ws", Echo, {"seen": seen}), (r"/forbidden", Forbidden)])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    server = tornado.httpserver.HTTPServer(app, ssl_options=ssl_ctx)
    server.add_sockets([sock])
    return server, sock.getsockname()[1], seen


async def stop(server: Any) -> None:
    server.stop()
    await server.close_all_connections()


def collector() -> tuple[list, Callable[[Any], None]]:
    got: list = []
    return got, got.append


# -- a hand-written server on a raw socket -------------------------------------------------------


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One unmasked server frame."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        return head + bytes([n]) + payload
    if n < 1 << 16:
        return head + bytes([126]) + struct.pack("!H", n) + payload
    return head + bytes([127]) + struct.pack("!Q", n) + payload


async def read_client_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One masked client frame: (opcode, payload)."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    mask = await reader.readexactly(4)
    data = await reader.readexactly(n)
    return b0 & 0x0F, bytes(c ^ mask[i % 4] for i, c in enumerate(data))


class RawServer:
    """Accepts the upgrade (``answer``: extra response header lines, ``upgrade=False``:
    never answers it), writes ``script`` right after the 101 in the same write, then
    records the client's frames (``frames``) without answering anything: no pongs.
    ``hold``: answer the upgrade only once this event is set."""

    def __init__(self, script: bytes = b"", answer: str = "", upgrade: bool = True,
                 hold: asyncio.Event | None = None) -> None:
        self.script, self.answer, self.upgrade, self.hold = script, answer, upgrade, hold
        self.frames: list[tuple[int, bytes]] = []
        self.requests: list[bytes] = []
        self.handlers: set[asyncio.Task] = set()
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> RawServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.writers.append(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            if not self.upgrade:
                await reader.read()  # wait until the client gives up
                return
            if self.hold is not None:  # answer only when the test says so
                await self.hold.wait()
            key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key:"))
            accept = base64.b64encode(hashlib.sha1(key + GUID.encode()).digest()).decode()
            writer.write((f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
                          f"{self.answer}\r\n").encode() + self.script)
            while True:
                self.frames.append(await read_client_frame(reader))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()

    def close_frames(self) -> list[tuple[int, str]]:
        return [(struct.unpack("!H", p[:2])[0], p[2:].decode()) for op, p in self.frames
                if op == 0x8 and len(p) >= 2]


# -- messages ----------------------------------------------------------------------------------


def test_text_and_binary_messages_headers_and_a_negotiated_subprotocol():
    async def main() -> None:
        server, port, seen = await tornado_server()
        got, on_message = collector()
        ws = await connect(f"ws://127.0.0.1:{port}/ws", on_message,
                           headers={"X-Api-Key": "k1", "Authorization": "Bearer t"},
                           subprotocols=["other", "livestream.v1"])
        assert ws.subprotocol == "livestream.v1"
        assert seen["offered"] == ["other", "livestream.v1"]
        assert seen["headers"]["X-Api-Key"] == "k1"
        assert seen["headers"]["Authorization"] == "Bearer t"
        ws.send("héllo")
        ws.send(b"\x00\x01binary")
        await until(lambda: len(got) == 2, what="two echoes")
        assert got == ["héllo", b"\x00\x01binary"]
        assert type(got[0]) is str and type(got[1]) is bytes
        ws.close()
        await ws.wait_closed()
        await stop(server)

    run(main())


def test_a_server_that_accepts_no_subprotocol_leaves_none_chosen():
    async def main() -> None:
        server, port, seen = await tornado_server()
        got, on_message = collector()
        ws = await connect(f"ws://127.0.0.1:{port}/ws", on_message, subprotocols=["feed.v9"])
        assert seen["offered"] == ["feed.v9"] and ws.subprotocol is None
        ws.send("still works")
        await until(lambda: got == ["still works"], what="an echo")
        ws.close()
        await ws.wait_closed()
        await stop(server)

    run(main())


def test_a_subprotocol_that_was_not_offered_fails_the_handshake():
    async def main() -> None:
        raw = await RawServer(answer="Sec-WebSocket-Protocol: sneaky\r\n").start()
        with pytest.raises(HandshakeError, match="'sneaky', which was not offered"):
            await connect(raw.url, print, subprotocols=["feed.v2"])
        assert b"Sec-WebSocket-Protocol: feed.v2" in raw.requests[0]
        await raw.stop()

    run(main())


def test_fragmented_messages_are_joined_and_pings_between_fragments_answered():
    text = "fragmented ✓ text".encode()
    script = (frame(0x1, text[:5], fin=False) + frame(0x9, b"hb")  # a ping between fragments
              + frame(0x0, text[5:12], fin=False) + frame(0x0, text[12:])
              + frame(0x2, b"\x01\x02", fin=False) + frame(0x0, b"\x03")
              + frame(0x1, b"whole"))

    async def main() -> None:
        raw = await RawServer(script=script).start()
        got, on_message = collector()
        ws = await connect(raw.url, on_message)
        await until(lambda: len(got) == 3, what="three messages")
        assert got == ["fragmented ✓ text", b"\x01\x02\x03", "whole"]
        await until(lambda: (0xA, b"hb") in raw.frames, what="the pong")
        ws.close()
        await raw.stop()

    run(main())


def test_messages_sent_with_the_upgrade_response_arrive_after_connect_returns():
    async def main() -> None:
        raw = await RawServer(script=frame(0x1, b"first") + frame(0x1, b"second")).start()
        got: list = []
        ready = False

        def on_message(data: Any) -> None:
            got.append((ready, data))

        ws = await connect(raw.url, on_message)
        ready = True  # what the caller sets up before its first await
        await until(lambda: len(got) == 2, what="two messages")
        assert got == [(True, "first"), (True, "second")]
        ws.close()
        await raw.stop()

    run(main())


# -- text messages in lists (on_texts) ------------------------------------------------------------


def test_text_messages_come_in_lists_in_their_order_among_binary_fragments_and_the_close():
    """With ``on_texts``, the text messages of one read come as one list of UTF-8 bytes;
    a binary message, a fragmented text and the close each hand on the texts before them
    first, so the order across the two callbacks is the order on the wire. Texts that came
    with the 101 are held until connect() returns and arrive one by one, as str."""
    later = (frame(0x1, b"a") + frame(0x1, "b\u00e9".encode()) + frame(0x2, b"\x00c")
             + frame(0x1, b"d") + frame(0x1, b"e1", fin=False) + frame(0x0, b"e2")
             + frame(0x1, b"f") + frame(0x1, b"g") + frame(0x8, struct.pack("!H", 1000)))

    async def main() -> None:
        raw = await RawServer(script=frame(0x1, b"early")).start()
        got: list = []
        closed = asyncio.Event()
        ws = await connect(raw.url, lambda m: got.append(("one", m)),
                           lambda _ws: closed.set(), on_texts=lambda ts: got.append(("list", ts)))
        await until(lambda: raw.writers and got, what="the early message")
        raw.writers[0].write(later)
        await asyncio.wait_for(closed.wait(), 10)
        # (how the texts between two other events split into lists follows the reads)
        flat = [(kind, m) for kind, ms in got for m in (ms if kind == "list" else [ms])]
        assert flat == [("one", "early"), ("list", b"a"), ("list", "b\u00e9".encode()),
                        ("one", b"\x00c"), ("list", b"d"), ("list", b"e1e2"), ("list", b"f"),
                        ("list", b"g")]
        assert ws.close_code == 1000
        await raw.stop()

    run(main())


def test_a_burst_of_text_messages_comes_in_few_lists():
    async def main() -> None:
        raw = await RawServer().start()
        lists: list = []
        ws = await connect(raw.url, print, on_texts=lists.append)
        await until(lambda: raw.writers, what="the connection")
        raw.writers[0].write(b"".join(frame(0x1, b"%d" % i) for i in range(500)))
        await until(lambda: sum(map(len, lists)) == 500, what="500 messages")
        assert [m for ms in lists for m in ms] == [b"%d" % i for i in range(500)]
        assert len(lists) < 100  # one list per read from the socket, not per message
        ws.close()
        await raw.stop()

    run(main())


@pytest.mark.parametrize("bad", [
    [b"\xff"],  # not UTF-8 at all
    [b"x\xc3", b"\xa9y"],  # a sequence broken across two messages: each is invalid
])
def test_a_text_that_is_not_utf8_ends_a_list_and_the_connection_with_1007(bad):
    """The list's UTF-8 is checked at once; the messages before the bad one are handed
    on, nothing after it, and the connection fails with 1007 as for a single message."""
    async def main() -> None:
        raw = await RawServer().start()
        got: list = []
        closed = asyncio.Event()
        await connect(raw.url, got.append, lambda _ws: closed.set(), on_texts=got.append)
        await until(lambda: raw.writers, what="the connection")
        raw.writers[0].write(b"".join(frame(0x1, t) for t in [b"ok1", b"ok2", *bad, b"after"]))
        await asyncio.wait_for(closed.wait(), 10)
        assert got == [[b"ok1", b"ok2"]]
        assert raw.close_frames() == [(1007, "invalid UTF-8 in a text message")]
        await raw.stop()

    run(main())


def test_a_failing_list_handler_closes_1011_as_a_failing_message_handler_does():
    async def main() -> None:
        raw = await RawServer().start()
        closed = asyncio.Event()

        def boom(texts: list) -> None:
            raise RuntimeError("boom")

        await connect(raw.url, print, lambda _ws: closed.set(), on_texts=boom)
        await until(lambda: raw.writers, what="the connection")
        raw.writers[0].write(frame(0x1, b"x"))
        await asyncio.wait_for(closed.wait(), 10)
        assert raw.close_frames() == [(1011, "message handler failed")]
        await raw.stop()

    run(main())


# -- the size limit ----------------------------------------------------------------------------


def test_max_message_size_bounds_the_whole_message_and_closes_1009():
    # every frame is under the limit; the message they make is not
    script = frame(0x1, b"a" * 600, fin=False) + frame(0x0, b"b" * 600)

    async def main() -> None:
        raw = await RawServer(script=script + frame(0x1, b"never")).start()
        got, on_message = collector()
        closed: list[WebSocket] = []
        ws = await connect(raw.url, on_message, closed.append, max_message_size=1000)
        await until(lambda: closed, what="the connection to end")
        assert got == [] and ws.too_big
        assert raw.close_frames() == [(1009, "message too big")]
        await raw.stop()

    run(main())


def test_one_frame_over_max_message_size_closes_1009_and_a_message_at_the_limit_passes():
    async def main() -> None:
        server, port, _ = await tornado_server()
        got, on_message = collector()
        closed: list[WebSocket] = []
        ws = await connect(f"ws://127.0.0.1:{port}/ws", on_message, closed.append,
                           max_message_size=1000)
        ws.send("big 1000")
        await until(lambda: got, what="a message at the limit")
        ws.send("big 1001")
        await until(lambda: closed, what="the connection to end")
        assert len(got) == 1 and len(got[0]) == 1000  # the bigger one never reaches us
        assert ws.too_big
        await stop(server)

    run(main())


def test_a_feed_over_max_message_size_shows_the_same_failure_as_before():
    async def main() -> None:
        raw = await RawServer(script=frame(0x1, b"[" + b"1," * 600 + b"1]")).start()
        feed = open_feed(raw.url, max_message_size=1000, reconnect=False)
        await until(lambda: feed.state == "closed", what="the feed to end")
        assert feed.stats.last_failure == "connection lost"
        assert [code for code, _ in raw.close_frames()] == [1009]
        feed.close()
        await raw.stop()

    run(main())


# -- closing -----------------------------------------------------------------------------------


def test_the_servers_close_code_and_reason_are_read_and_the_clients_are_sent():
    async def main() -> None:
        server, port, seen = await tornado_server()
        closed: list[WebSocket] = []
        ws = await connect(f"ws://127.0.0.1:{port}/ws", print, closed.append)
        ws.send("close 4003 token expired")
        await until(lambda: closed, what="the server's close")
        assert (ws.close_code, ws.close_reason) == (4003, "token expired")
        assert closed == [ws] and ws.closed
        with pytest.raises(ConnectionError):
            ws.send("too late")

        ws2 = await connect(f"ws://127.0.0.1:{port}/ws", print)
        ws2.close(4001, "client going")
        await ws2.wait_closed()
        await until(lambda: seen.get("close") == (4001, "client going"), what="the server")
        assert ws2.close_code == 4001  # the server echoed it
        await stop(server)

    run(main())


def test_closing_and_cancelling_on_the_loop_leave_no_tasks_behind():
    async def main() -> None:
        server, port, _ = await tornado_server()
        before = other_tasks()
        ws = await connect(f"ws://127.0.0.1:{port}/ws", print, ping_interval=5, ping_timeout=5)
        ws.close()
        await ws.wait_closed()
        await asyncio.sleep(0)  # the step that reads picows' disconnect result
        assert other_tasks() == before
        # a connect cancelled while the server has not answered the upgrade
        raw = await RawServer(upgrade=False).start()
        task = asyncio.ensure_future(connect(raw.url, print))
        await until(lambda: raw.requests, what="the upgrade request")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # a livestream connection closed from the loop it runs on
        from livestream.client.connection import Connection

        conn = Connection(f"ws://127.0.0.1:{port}/ws", reconnect=False)
        await until(lambda: conn._ws is not None, what="connected")
        conn.close()
        await until(lambda: conn._task.done(), what="the connection's task to end")
        await raw.stop()
        await until(lambda: other_tasks() == before, what="no tasks left")
        await stop(server)

    run(main())


# -- pings -------------------------------------------------------------------------------------


def test_auto_ping_drops_a_peer_that_stopped_answering():
    async def main() -> None:
        raw = await RawServer().start()  # completes the upgrade, then never answers
        closed: list[WebSocket] = []
        ws = await connect(raw.url, print, closed.append, ping_interval=0.05, ping_timeout=0.05)
        await until(lambda: closed, what="the ping timeout")
        assert ws.ping_timed_out
        assert any(op == 0x9 for op, _ in raw.frames)
        await raw.stop()

    run(main())


def test_ping_timeout_longer_than_the_interval_is_clamped_as_tornado_did():
    async def main() -> None:
        raw = await RawServer().start()
        closed: list[WebSocket] = []
        await connect(raw.url, print, closed.append, ping_interval=0.05, ping_timeout=30)
        await until(lambda: closed, what="the ping timeout")
        await raw.stop()

    run(main())


# -- failures: the same types and words as with Tornado's client ---------------------------------


def test_refused_connect_http_status_and_timeout_errors():
    async def main() -> None:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        with pytest.raises(ConnectionRefusedError, match=r"^\[Errno \d+\] Connection refused$"):
            await connect(f"ws://127.0.0.1:{port}/ws", print)
        server, port, _ = await tornado_server()
        with pytest.raises(HTTPClientError) as info:
            await connect(f"ws://127.0.0.1:{port}/forbidden", print)
        assert info.value.code == 403 and str(info.value) == "HTTP 403: Forbidden"
        raw = await RawServer(upgrade=False).start()
        with pytest.raises(TimeoutError, match="Timeout while connecting"):
            await connect(raw.url, print, connect_timeout=0.2)
        await raw.stop()
        await stop(server)

    run(main())


@pytest.fixture(scope="module")
def tls() -> tuple[trustme.CA, ssl.SSLContext]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    return ca, server_ctx


def test_wss_with_a_private_ca_with_verify_off_and_untrusted(tls):
    ca, server_ctx = tls

    async def main() -> None:
        server, port, _ = await tornado_server(server_ctx)
        url = f"wss://127.0.0.1:{port}/ws"
        trusting = ssl.create_default_context()
        ca.configure_trust(trusting)
        got, on_message = collector()
        ws = await connect(url, on_message, ssl=trusting)
        ws.send("over tls")
        await until(lambda: got == ["over tls"], what="an echo over TLS")
        ws.close()
        await ws.wait_closed()
        unchecked = ssl.create_default_context()
        unchecked.check_hostname = False
        unchecked.verify_mode = ssl.CERT_NONE
        ws = await connect(url, print, ssl=unchecked)
        ws.close()
        await ws.wait_closed()
        with pytest.raises(ssl.SSLCertVerificationError, match="CERTIFICATE_VERIFY_FAILED"):
            await connect(url, print, ssl=ssl.create_default_context())
        await stop(server)

    run(main())


def test_a_connection_over_max_message_size_shows_the_same_failure_as_before():
    async def main() -> None:
        from livestream.client.connection import Connection

        server, port, seen = await tornado_server()
        conn = Connection(f"ws://127.0.0.1:{port}/ws", reconnect=False, max_message_size=1000)
        await until(lambda: conn._ws is not None, what="connected")
        conn._ws.send("big 5000")
        await until(lambda: conn.state == "closed", what="the connection to end")
        assert conn.stats.last_error == "connection lost"
        await until(lambda: "close" in seen, what="the server to see the close")
        assert seen["close"][0] == 1009
        await stop(server)

    run(main())


class ConnectProxy:
    """An HTTP CONNECT proxy: records the targets asked for and pipes bytes both ways."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.open = 0  # tunnels not yet closed both ways
        self.tasks: set[asyncio.Task] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
        assert method == "CONNECT"
        self.targets.append(target)
        host, port = target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
            dst.close()

        self.open += 1
        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self.open -= 1

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def test_through_an_http_connect_proxy():
    async def main() -> None:
        server, port, seen = await tornado_server()
        proxy = ConnectProxy()
        proxy_url = await proxy.start()
        got, on_message = collector()
        ws = await connect(f"ws://127.0.0.1:{port}/ws", on_message, proxy=proxy_url,
                           headers={"X-Through": "proxy"})
        assert proxy.targets == [f"127.0.0.1:{port}"]
        assert seen["headers"]["X-Through"] == "proxy"
        ws.send("tunnelled")
        await until(lambda: got == ["tunnelled"], what="an echo through the proxy")
        ws.close()
        await ws.wait_closed()
        await proxy.stop()
        await stop(server)

    run(main())


def test_a_handshake_that_completes_after_its_connect_was_cancelled_is_dropped():
    async def main() -> None:
        hold = asyncio.Event()
        raw = await RawServer(hold=hold).start()
        before = other_tasks() | set(raw.handlers)
        task = asyncio.ensure_future(connect(raw.url, print, ping_interval=0.05))
        await until(lambda: raw.requests, what="the upgrade request")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        hold.set()  # the 101 arrives now, for nobody
        await until(lambda: raw.handlers and all(t.done() for t in raw.handlers),
                    what="the server to see the socket closed")
        assert not any(op == 0x9 for op, _ in raw.frames)  # no auto-ping ever ran
        await until(lambda: other_tasks() <= before, what="no tasks left")
        await raw.stop()

    run(main())


class Refuser(tornado.websocket.WebSocketHandler):
    """Says why and closes at once, as a feed refusing a client does."""

    def open(self) -> None:
        self.write_message('{"type":"error","reason":"no subscribe within 5s"}')
        self.close(1008, "policy")


def test_a_server_that_sends_its_reason_and_closes_at_once_is_heard_out():
    async def main() -> None:
        app = tornado.web.Application([(r"/ws", Refuser)])
        server = tornado.httpserver.HTTPServer(app)
        sock, = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server.add_sockets([sock])
        url = f"ws://127.0.0.1:{sock.getsockname()[1]}/ws"
        for _ in range(5):  # the close may be read before or after connect() returns
            got: list = []
            closes: list = []
            ws = await connect(url, got.append, closes.append)
            ws.send('{"op":"subscribe"}')  # the caller's first send does not raise
            await until(lambda: closes, what="the close reported")  # noqa: B023
            assert closes == [ws]
            assert got == ['{"type":"error","reason":"no subscribe within 5s"}']
            assert (ws.close_code, ws.close_reason) == (1008, "policy")
        await stop(server)

    run(main())


def test_connections_and_feeds_take_a_proxy_and_refuse_a_bad_one():
    import livestream as ls
    from livestream.client.connection import Connection

    async def main() -> None:
        srv = ls.serve(port=0)
        proxy = ConnectProxy()
        proxy_url = await proxy.start()
        conn = Connection(srv.url, proxy=proxy_url)
        await conn.wait_live()
        assert proxy.targets == [f"127.0.0.1:{srv.port}"]
        conn.close()
        await until(lambda: proxy.open == 0, what="the tunnel closed")
        server, port, _ = await tornado_server()
        feed = open_feed(f"ws://127.0.0.1:{port}/ws", proxy=proxy_url)
        await until(lambda: feed.state == "live", what="the feed live through the proxy")
        assert proxy.targets[-1] == f"127.0.0.1:{port}"
        feed.close()
        await until(lambda: proxy.open == 0, what="the tunnel closed")
        await proxy.stop()
        await stop(server)
        await srv.aclose()

    run(main())
    for bad in ("127.0.0.1:3128", "ftp://proxy"):
        with pytest.raises(ValueError, match="proxy must be a URL"):
            Connection("ws://127.0.0.1:1/ws", proxy=bad)
        with pytest.raises(ValueError, match="proxy must be a URL"):
            open_feed("ws://127.0.0.1:1/ws", proxy=bad)
