"""Shared pytest setup: markers, heavy-test gating, and fixtures for every test directory.

Markers (declared in ``pyproject.toml``):

- ``soak``: skipped unless ``--run-slow`` is given or ``CI`` is set.
- ``browser``: needs Debian's Chromium (``/usr/bin/chromium``); skipped when it is
  missing, except under ``CI`` where a missing browser **fails** the test.
- ``redis``: needs a ``redis-server`` binary; same rule as ``browser``.

Fixtures: ``free_port``, ``server`` / ``make_server`` (in-process servers on the
``livestream-io`` thread, closed after the test), ``run_async`` (run a coroutine
on a fresh event loop with a timeout), ``chromium_path`` / ``chromium_args``,
``redis_server`` (a real ``redis-server`` on a free loopback port), ``make_redis``
(more of them, optionally with AOF persistence).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from testutil import poll as poll_until
from testutil import stop_process

ROOT = Path(__file__).resolve().parents[1]


def in_ci() -> bool:
    """Whether the tests run under CI (``CI`` set to anything but empty/0/false/no)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


IN_CI = in_ci()

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")

#: Flags for headless Chromium here: as root it needs --no-sandbox, and with no
#: internet its background networking only produces refused connections.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
)


def find_chromium() -> str | None:
    """Debian's Chromium, or ``$LIVESTREAM_CHROMIUM``; ``None`` when not installed."""
    env = os.environ.get("LIVESTREAM_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


def find_redis_server() -> str | None:
    """The ``redis-server`` binary, or ``None``."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None)


def _missing(what: str) -> None:
    """Skip locally; fail under CI (a CI run must not skip what it is there to run)."""
    if IN_CI:
        pytest.fail(f"{what} is required under CI (scripts/test installs it)", pytrace=False)
    pytest.skip(f"{what} is not installed")


# -- options and markers ------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="run tests marked soak (always run when CI is set)")


def pytest_configure(config: pytest.Config) -> None:
    # Test directories have no __init__.py and may hold files with the same basename
    # (tests/spine/test_kernel.py, tests/notebook/test_kernel.py). pytest's default
    # "prepend" import mode imports both as the module ``test_kernel`` and fails; the
    # "importlib" mode names each by its path. Helper modules beside the tests
    # (spine_util, fakefeed, kernel_util) stay importable by putting their
    # directories on sys.path, as "prepend" mode did.
    if config.option.importmode == "prepend":
        config.option.importmode = "importlib"
        tests_dir = Path(__file__).resolve().parent
        for d in sorted({p.parent for p in tests_dir.rglob("*.py")}, reverse=True):
            if "__pycache__" not in d.parts and str(d) not in sys.path:
                sys.path.insert(0, str(d))
    # markers are declared in pyproject.toml; repeat them so a bare `pytest tests/x.py`
    # from another rootdir still knows them
    for line in ("browser: drives a real Chromium", "soak: long or heavy tests",
                 "redis: needs a redis-server binary"):
        config.addinivalue_line("markers", line)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("soak") and not (item.config.getoption("--run-slow") or IN_CI):
        pytest.skip("soak test: run with --run-slow (always runs under CI)")
    if item.get_closest_marker("browser") and find_chromium() is None:
        _missing("Chromium (/usr/bin/chromium, Debian package chromium)")
    if item.get_closest_marker("redis") and find_redis_server() is None:
        _missing("redis-server (Debian package redis-server)")


# -- generic fixtures ---------------------------------------------------------------------------


def get_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    """A free loopback TCP port (prefer ``port=0`` where the code under test allows it)."""
    return get_free_port()


@pytest.fixture
def make_server() -> Iterator[Callable[..., Any]]:
    """A factory: ``make_server(**ServerConfig fields)`` → a running ``ls.Server`` on a free
    loopback port (``livestream-io`` thread). Every server made is closed after the test."""
    import livestream as ls

    made: list[Any] = []

    def make(**options: Any) -> Any:
        options.setdefault("host", "127.0.0.1")
        options.setdefault("port", 0)
        host, port = options.pop("host"), options.pop("port")
        srv = ls.serve(host, port, **options)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        with contextlib.suppress(Exception):
            srv.close()


@pytest.fixture
def server(make_server: Callable[..., Any]) -> Any:
    """An in-process ``ls.serve(port=0)`` with default settings, closed after the test."""
    return make_server()


@pytest.fixture
def run_async() -> Callable[..., Any]:
    """``run_async(coro, timeout=60)``: run a coroutine on a fresh event loop, bounded."""

    def run(coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
        return asyncio.run(asyncio.wait_for(coro, timeout))

    return run


def wait_for(pred: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
             what: str = "condition") -> Any:
    """Poll ``pred()`` until it returns something truthy; fail after ``timeout`` seconds."""
    return poll_until(pred, timeout, what, step=interval)


@pytest.fixture
def poll() -> Callable[..., Any]:
    """``poll(pred, timeout=10, what=...)``: wait for ``pred()`` to be truthy (a deadline,
    never a fixed sleep) and return its value."""
    return wait_for


# -- Chromium -----------------------------------------------------------------------------------


@pytest.fixture
def browser(chromium_path: str, chromium_args: list[str]) -> Iterator[Any]:
    """A headless Playwright Chromium (Debian's binary), closed after the test."""
    from playwright.sync_api import sync_playwright

    args = [a for a in chromium_args if not a.startswith("--headless")]
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=args, headless=True)
        try:
            yield b
        finally:
            with contextlib.suppress(Exception):
                b.close()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Path of Debian's Chromium. Skips when missing; fails under CI."""
    path = find_chromium()
    if path is None:
        _missing("Chromium (/usr/bin/chromium, Debian package chromium)")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def chromium_args() -> list[str]:
    """Launch flags for headless Chromium on this machine (root, no internet)."""
    return list(CHROMIUM_ARGS)


# -- Redis --------------------------------------------------------------------------------------


def _redis_ping(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """A ``redis-server`` process on a loopback port; ``stop()``/``start()`` to restart it
    (``kill()`` for a crash). ``appendonly=True`` persists every write to an AOF in
    ``workdir`` (``appendfsync always``), so a restart keeps the data; otherwise nothing
    is persisted and a restart starts empty."""

    binary: str
    port: int
    workdir: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)
    appendonly: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> RedisServer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        persist = ["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly \
            else ["--appendonly", "no"]
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             *persist, "--dir", str(self.workdir), "--daemonize", "no",
             "--protected-mode", "yes"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        proc = self.proc

        def answers() -> bool:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"redis-server exited with {proc.returncode}: {err}")
            return _redis_ping(self.port)

        try:
            poll_until(answers, timeout, "redis-server to answer PING", step=0.02)
        except AssertionError:
            self.stop()
            raise RuntimeError(f"redis-server did not answer PING within {timeout}s") from None
        return self

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            stop_process(proc, timeout)
        finally:
            if proc.stderr is not None:
                proc.stderr.close()

    def kill(self) -> None:
        """SIGKILL the server (a crash: no shutdown, no final save)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()

    def ping(self) -> bool:
        return _redis_ping(self.port)


@pytest.fixture
def make_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """A factory: ``make_redis(appendonly=False)`` → a started ``redis-server`` on a free
    loopback port, its own directory under ``tmp_path``. Skips when redis-server is missing
    (fails under CI). Every server made is stopped after the test."""
    binary = find_redis_server()
    if binary is None:
        _missing("redis-server (Debian package redis-server)")
    assert binary is not None
    made: list[RedisServer] = []

    def make(appendonly: bool = False) -> RedisServer:
        workdir = tmp_path / f"redis{len(made)}"
        workdir.mkdir()
        server = RedisServer(binary, get_free_port(), workdir, appendonly=appendonly)
        made.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in made:
            with contextlib.suppress(Exception):
                server.stop()


@pytest.fixture
def redis_server(make_redis: Callable[..., RedisServer]) -> RedisServer:
    """A fresh ``redis-server --save '' --appendonly no`` on a free loopback port.

    ``.url`` is ``redis://127.0.0.1:<port>/0``. Skips when redis-server is missing
    (fails under CI). Stopped after the test."""
    return make_redis()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a test CA (``ca.pem``) and a certificate for 127.0.0.1 and
    localhost signed by it (``cert.pem``, ``key.pem``), for wss:// and https:// tests."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d = tmp_path_factory.mktemp("tls")
    cert.private_key_pem.write_to_path(d / "key.pem")
    cert.cert_chain_pems[0].write_to_path(d / "cert.pem")
    ca.cert_pem.write_to_path(d / "ca.pem")
    return d
