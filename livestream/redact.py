"""Keep credentials out of logs: token values and ``Authorization`` headers are scrubbed.

Tokens travel in URLs (``ws://host/ws?token=…``, ``GET /topics?token=…``), in
``Authorization: Bearer …`` headers and in ``hello`` / ``subscribe`` messages. Tornado's
access log writes every request's URI with its query string (4xx at WARNING, so they reach
stderr even when nobody configured logging), and livestream's own log lines name URLs. A
:class:`ScrubFilter` on each of those loggers rewrites a record before any handler sees it:

- ``token=VALUE`` (any query parameter whose name ends in ``token``) → ``token=***``;
- ``Authorization: VALUE`` / ``'Authorization': 'VALUE'`` → ``Authorization: ***``;
- ``Bearer VALUE`` → ``Bearer ***``;
- ``"token": "VALUE"`` (JSON or a Python dict repr; any key ending in ``token``) →
  ``"token": "***"``.

:func:`install` (run when ``livestream`` is imported) attaches the filter to every logger in
:data:`SCRUBBED_LOGGERS` and to any other ``livestream.*`` logger that exists by then.
"""

from __future__ import annotations

import logging
import re

__all__ = ["SCRUBBED_LOGGERS", "ScrubFilter", "install", "scrub"]

#: Loggers whose records are scrubbed: livestream's own and Tornado's (``tornado.access`` logs
#: request URIs; ``tornado.application`` / ``tornado.general`` log them with exceptions).
SCRUBBED_LOGGERS: tuple[str, ...] = (
    "livestream", "livestream.server", "livestream.client", "livestream.feeds",
    "livestream.cli", "livestream.dashboard", "livestream.demo", "livestream.notebook",
    "livestream.backplane.redis", "tornado.access", "tornado.application", "tornado.general",
)

MASK = "***"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # a query parameter (or key=value) whose name ends in "token"
    (re.compile(r"(?i)(\b[\w-]*token=)[^&\s;#\"'<>)\]]+"), r"\1" + MASK),
    # an Authorization header's whole value, as a header line or a dict / JSON item
    (re.compile(r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,}]+"), r"\1" + MASK),
    # a bearer credential anywhere else
    (re.compile(r"(?i)(\bbearer\s+)[\w.~+/=-]+"), r"\1" + MASK),
    # "token": "value" / 'publish_token': 'value' in JSON or a repr
    (re.compile(r"(?i)([\"'][\w-]*token[\"']\s*:\s*[\"'])[^\"']*"), r"\1" + MASK),
    # the password in a Redis URL (redis://[user]:password@host)
    (re.compile(r"(?i)(\brediss?://[^:/@\s]*:)[^@\s]+@"), r"\1" + MASK + "@"),
)
_HINTS = ("token", "bearer", "authorization", "redis")


def scrub(text: str) -> str:
    """``text`` with token values and credentials replaced by ``***``."""
    low = text.lower()
    if not any(h in low for h in _HINTS):
        return text
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class ScrubFilter(logging.Filter):
    """A logging filter that scrubs a record's message and exception text (never drops it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the handler report it as usual
            return True
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            # format the traceback now (Formatter.format reuses exc_text) so it is scrubbed too
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


_FILTER = ScrubFilter()


def install() -> None:
    """Attach the scrubbing filter to livestream's and Tornado's loggers (idempotent)."""
    names = set(SCRUBBED_LOGGERS)
    names.update(n for n in logging.root.manager.loggerDict if n.startswith("livestream."))
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ScrubFilter) for f in logger.filters):
            logger.addFilter(_FILTER)
