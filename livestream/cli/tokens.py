"""``livestream token`` (mint signed tokens) and ``livestream topics ls|rm`` (over HTTP)."""

from __future__ import annotations

import time
from typing import Any

import click

from ..client.http import HttpClient
from ._common import _console, _open_http, tls_options


def _when(text: str, now: float) -> float:
    """``--nbf``: a delay from now (``10m``) or an ISO-8601 time (naive = UTC)."""
    import datetime as dt

    from ..server.auth import parse_duration

    try:
        return now + parse_duration(text)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither a delay (10m) nor an ISO time",
                                 param_hint="'--nbf'") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()


@click.command()
@click.option("--secret-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Shared secret (the server's --jwt-secret-file): signs with HS256.")
@click.option("--private-key-file", type=click.Path(exists=True, dir_okay=False),
              default=None,
              help="PEM private key whose public key the server has (--jwt-public-key-file): "
                   "RSA signs with RS256, EC P-256 with ES256, Ed25519 with EdDSA.")
@click.option("--alg", default=None, metavar="ALG",
              help="Signing algorithm (default: from the key, as above).")
@click.option("--sub", "sub", multiple=True, metavar="PATTERN",
              help="Topics the bearer may subscribe to (glob, e.g. 'prices.*'; repeatable).")
@click.option("--pub", "pub", multiple=True, metavar="PATTERN",
              help="Topics the bearer may publish to (repeatable). A pattern naming one "
                   "topic exactly also lets the bearer create it.")
@click.option("--admin", "admin", multiple=True, metavar="PATTERN",
              help="Topics the bearer owns: create, delete, publish and subscribe "
                   "(repeatable).")
@click.option("--ttl", default="1h", show_default=True, metavar="DURATION",
              help="How long the token is valid: 90s, 15m, 1h, 7d.")
@click.option("--aud", default=None, metavar="AUD",
              help="Audience: the server's --jwt-audience.")
@click.option("--nbf", default=None, metavar="WHEN",
              help="Not valid before: a delay (10m) or an ISO time; --ttl counts from it.")
@click.option("--subject", default=None, metavar="NAME",
              help="Who the token is for (the JWT 'sub' claim; shown in server logs).")
def token(secret_file: str | None, private_key_file: str | None, alg: str | None,
          sub: tuple[str, ...], pub: tuple[str, ...], admin: tuple[str, ...], ttl: str,
          aud: str | None, nbf: str | None, subject: str | None) -> None:
    """Mint a signed token granting topic patterns; prints it (one line).

    \b
    livestream token --secret-file jwt.secret --sub 'prices.*' --pub orders --ttl 1h
    """
    from ..server.auth import (
        HMAC_ALGORITHMS,
        PUBLIC_KEY_ALGORITHMS,
        load_private_key,
        mint_token,
        parse_duration,
        read_secret,
    )

    if (secret_file is None) == (private_key_file is None):
        raise click.UsageError("give --secret-file or --private-key-file (one of them)")
    try:
        seconds = parse_duration(ttl)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--ttl'") from None
    try:
        if secret_file is not None:
            key: Any = read_secret(secret_file)
            algorithm = alg or "HS256"
            if algorithm not in HMAC_ALGORITHMS:
                raise click.BadParameter(f"a secret signs with {', '.join(HMAC_ALGORITHMS)}",
                                         param_hint="'--alg'")
        else:
            key, default_alg = load_private_key(private_key_file)  # type: ignore[arg-type]
            algorithm = alg or default_alg
            if algorithm not in PUBLIC_KEY_ALGORITHMS:
                raise click.BadParameter(
                    f"a private key signs with {', '.join(PUBLIC_KEY_ALGORITHMS)}",
                    param_hint="'--alg'")
        now = time.time()
        tok = mint_token(key, algorithm=algorithm, sub=sub, pub=pub, admin=admin, ttl=seconds,
                         audience=aud, not_before=_when(nbf, now) if nbf else None,
                         subject=subject, now=now)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(tok)


# -- topics -----------------------------------------------------------------------------------


def _topics_options(fn: Any) -> Any:
    opts = [
        click.option("--url", envvar="LIVESTREAM_URL", default="http://127.0.0.1:8765",
                     show_default=True,
                     help="The server (http(s):// or its ws(s):// URL) [env: LIVESTREAM_URL]."),
        click.option("--token", envvar="LIVESTREAM_TOKEN", default=None,
                     help="Token: subscribe rights to list, admin rights to delete "
                          "[env: LIVESTREAM_TOKEN]."),
        *tls_options(),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@click.group()
def topics() -> None:
    """List or delete a server's topics (over HTTP)."""


@topics.command("ls")
@_topics_options
@click.option("--json", "as_json", is_flag=True, help="Print the server's JSON answer.")
def topics_ls(url: str, token: str | None, insecure: bool, ca: str | None,
              as_json: bool) -> None:
    """List the topics the token may see: name, mode, rows held, next offset."""
    import json as json_mod

    from rich.table import Table

    client = _open_http(HttpClient, url, token, insecure=insecure, ca=ca)
    try:
        reply = client.request("GET", f"{client.base.geturl()}/topics")
    finally:
        client.close()
    items = reply.get("topics", []) if isinstance(reply, dict) else []
    if as_json:
        click.echo(json_mod.dumps(items, indent=2))
        return
    table = Table(title_justify="left", box=None)
    for col, just in (("topic", "left"), ("mode", "left"), ("rows", "right"),
                      ("next offset", "right"), ("epoch", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for t in items:
        mode = t.get("mode", "")
        if t.get("key"):
            mode += f" by {', '.join(t['key'])}"
        table.add_row(t.get("name", ""), mode, f"{t.get('rows', 0):,}",
                      f"{t.get('next_offset', 0):,}", str(t.get("epoch", "")))
    _console().print(table)
    if not items:
        click.echo("(no topics)")


@topics.command("rm")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@_topics_options
def topics_rm(names: tuple[str, ...], url: str, token: str | None, insecure: bool,
              ca: str | None) -> None:
    """Delete topics and their history (needs the admin right on each; without auth on
    the server, only from the server's own machine). Their subscribers are told, and a
    topic published to again starts afresh."""
    from ..core.topic import check_topic_name
    from ..errors import TopicError

    for name in names:
        try:
            check_topic_name(name)
        except TopicError as exc:
            raise click.BadParameter(str(exc), param_hint="'NAME'") from None
    client = _open_http(HttpClient, url, token, insecure=insecure, ca=ca)
    try:
        for name in names:
            client.request("DELETE", client.topic_url(name))
            click.echo(f"deleted {name!r}")
    finally:
        client.close()
