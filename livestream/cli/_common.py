"""What every ``livestream`` command shares: the runtime error, the console, logging,
SIGTERM handling, option callbacks and the one-line error text."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any, TypeVar

import click

log = logging.getLogger("livestream.cli")

_C = TypeVar("_C")


class CLIError(click.ClickException):
    """A runtime failure: printed as ``Error: …``, exit code 1."""


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _sigterm_as_interrupt() -> None:
    """Turn SIGTERM into KeyboardInterrupt so ``kill`` shuts down as cleanly as Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _positive(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise click.BadParameter("must be greater than 0", ctx=ctx, param=param)
    return value


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _open_http(cls: type[_C], url: str, *args: Any, **kw: Any) -> _C:
    """``cls(url, ...)`` (an :class:`~livestream.client.http.HttpClient`) for ``--url``;
    a URL that is not http(s):// or ws(s):// is a usage error on ``--url``."""
    try:
        return cls(url, *args, **kw)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--url'") from None


def tls_options() -> list[Any]:
    """``--insecure`` and ``--ca``: how the HTTP commands verify an https:// server."""
    return [
        click.option("--insecure", is_flag=True,
                     help="Do not verify the server's TLS certificate."),
        click.option("--ca", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="CA bundle to verify an https:// server with."),
    ]
