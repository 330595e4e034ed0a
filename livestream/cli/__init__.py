"""The ``livestream`` command.

::

    livestream serve    [--host H] [--port P] [--token T] [--allow-origin O]... [--cert C --key K]
                        [--allow-host NAME]... [--trusted-proxy IP[/BITS]]...
                        [--admin-token T] [--jwt-secret-file F | --jwt-public-key-file K]
    livestream demo     [--port P] [--rate R] [--duration S]
    livestream publish  FILE --topic T [--url URL] [--token T]
    livestream replay   FILE --topic T --time-column C [--speed N] [--url URL]
    livestream record   TOPIC --out FILE [--url URL] [--duration S] [--rotate SIZE]
    livestream token    --secret-file F | --private-key-file K  [--sub P] [--pub P] [--admin P]
                        [--ttl 1h] [--aud A] [--nbf WHEN] [--subject NAME]
    livestream topics   ls | rm NAME...  [--url URL] [--token T]

Every command has ``--help``. Bad arguments and runtime failures end with one
line, ``Error: …``, on stderr and exit code 2 (usage) or 1 (anything else); no
traceback is shown unless ``LIVESTREAM_DEBUG=1`` is set.

The commands live in this package's modules: ``serve`` in :mod:`.serve`, ``demo``
in :mod:`.demo`, ``publish`` and ``replay`` in :mod:`.files`, ``record`` in
:mod:`.record`, ``token`` and
``topics`` in :mod:`.tokens`; what they share is in :mod:`._common`. This module
builds the group. The HTTP client ``publish``, ``replay`` and ``topics`` use is
:mod:`livestream.client.http`.

Extra commands plug in from optional modules (see :data:`PLUGIN_COMMANDS`):
:mod:`livestream.cli.bridge` exporting a click command ``bridge`` and
:mod:`livestream.cli.dashboard` exporting ``dashboard`` are registered when they
import (on the group's first use, so ``python -m livestream.cli.bridge`` runs the
module once).
"""


from __future__ import annotations

import importlib
import os
import sys

import click

from .._version import __version__
from ..client.http import HttpError
from ..errors import LivestreamError
from . import demo as _demo
from . import files as _files
from . import record as _record
from . import serve as _serve
from . import tokens as _tokens
from ._common import CLIError, _one_line, _sigterm_as_interrupt, log
from .files import read_table

__all__ = ["PLUGIN_COMMANDS", "CLIError", "cli", "main", "read_table", "register_plugins"]

#: Optional command modules: ``(module, attribute)``; each is added when it imports.
PLUGIN_COMMANDS: tuple[tuple[str, str], ...] = (
    ("livestream.cli.bridge", "bridge"),
    ("livestream.cli.dashboard", "dashboard"),
)


class _Group(click.Group):
    """The ``livestream`` group: the plug-in commands are added on its first use."""

    _plugins_added = False

    def _add_plugins(self) -> None:
        if not self._plugins_added:
            self._plugins_added = True
            register_plugins(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugins()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._add_plugins()
        return super().get_command(ctx, cmd_name)


# -- the group --------------------------------------------------------------------------------


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="livestream")
def cli() -> None:
    """livestream: live pandas DataFrames over WebSocket, for notebooks and dashboards.

    Start with `livestream demo`, then in a notebook:

    \b
        import livestream as ls
        conn = ls.connect("ws://127.0.0.1:8765/ws")
        trades = conn.subscribe("trades")
        trades.df
    """


for _command in (_serve.serve, _demo.demo, _files.publish, _files.replay, _record.record,
                 _tokens.token, _tokens.topics):
    cli.add_command(_command)


# -- plug-in commands -------------------------------------------------------------------------


def register_plugins(group: click.Group = cli) -> list[str]:
    """Add the optional commands of :data:`PLUGIN_COMMANDS` that import; returns their names.

    To add a command from another module, export a ``click.Command`` from it and
    list ``(module, attribute)`` in :data:`PLUGIN_COMMANDS`.
    """
    added = []
    for module, attr in PLUGIN_COMMANDS:
        try:
            command = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            if exc.name != module:  # the module exists but something it needs does not
                log.warning("livestream: command %r unavailable: %s", attr, exc)
            continue
        except AttributeError:
            continue
        group.add_command(command)
        added.append(command.name)
    return added


# -- entry point ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs :data:`cli`; errors end as one ``Error:`` line."""
    debug = os.environ.get("LIVESTREAM_DEBUG", "") not in ("", "0")
    _sigterm_as_interrupt()
    try:
        rv = cli.main(args=argv, prog_name="livestream", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"Error: {_one_line(exc.format_message())}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"Error: {_one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except HttpError as exc:  # the server unreachable or refusing: expected, no traceback
        click.echo(f"Error: {_one_line(str(exc))}", err=True)
        sys.exit(1)
    except (click.Abort, KeyboardInterrupt):
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except LivestreamError as exc:
        if debug:
            raise
        click.echo(f"Error: {_one_line(str(exc))}", err=True)
        sys.exit(1)
    except (OSError, ValueError, RuntimeError) as exc:
        if debug:
            raise
        click.echo(f"Error: {_one_line(f'{type(exc).__name__}: {exc}')}", err=True)
        sys.exit(1)
    except Exception as exc:
        if debug:
            raise
        click.echo(f"Error: internal error: {_one_line(f'{type(exc).__name__}: {exc}')} "
                   "(set LIVESTREAM_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
