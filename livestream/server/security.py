"""Defences against hostile web pages and spoofed proxy headers (docs/protocol.md §2.2–§2.4).

A browser will run any page's JavaScript against a server on the visitor's machine or network.
Three checks keep such a page from using the server (every one applies to the WebSocket
handshake and to every HTTP endpoint):

- **Host allowlist** (:class:`HostAllowlist`), against DNS rebinding: a page on
  ``attacker.example`` whose name later resolves to ``127.0.0.1`` is, for the browser, same-origin
  with the server, so an ``Origin`` check passes. Its requests still carry
  ``Host: attacker.example``: the server answers only Host names it knows (403
  ``host_not_allowed`` otherwise).
- **Origin rule** (:func:`origin_allowed`, :func:`cross_origin_refusal`), against cross-site
  WebSockets and cross-site publishes (CSRF): a page may open ``/ws`` or ``POST`` only from the
  same host, ``localhost`` or an allowlisted origin.
- **Trusted proxies** (:class:`TrustedProxies`): ``X-Forwarded-For`` / ``X-Real-Ip`` /
  ``X-Forwarded-Proto`` are honoured only on connections from a listed proxy address, so nobody
  else can choose the client address the server logs.

The functions here are plain Python; :class:`RequestGuard` applies them to a Tornado request.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from .config import ServerConfig

#: ``host`` values that mean "every interface".
WILDCARD_BINDS = ("", "0.0.0.0", "::")

_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


# -- Host ---------------------------------------------------------------------------------------


def split_host(value: str | None) -> str | None:
    """The host name of a ``Host`` header value, normalised; ``None`` when malformed.

    Lowercased, without the port, the brackets of an IPv6 literal or a trailing dot:
    ``"Example.COM.:8765"`` → ``"example.com"``, ``"[::1]:8765"`` → ``"::1"``.
    """
    v = (value or "").strip().lower()
    if not v:
        return None
    if v.startswith("["):
        end = v.find("]")
        rest = v[end + 1:]
        if end < 0 or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        host = v[1:end]
        return host if _ip(host) is not None and ":" in host else None
    if v.count(":") > 1:  # a bare IPv6 literal (not valid in a URL, sent by some tools)
        return v if _ip(v) is not None else None
    host, sep, port = v.partition(":")
    if sep and not port.isdigit():
        return None
    host = host[:-1] if host.endswith(".") else host
    return host if _NAME.fullmatch(host) else None


def _ip(text: str) -> _Address | None:
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def is_loopback_bind(host: str) -> bool:
    """Whether a server bound to ``host`` is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    addr = _ip(host.strip("[]"))
    return addr is not None and addr.is_loopback


def parse_allowed_host(entry: str) -> str:
    """An ``allowed_hosts`` entry normalised: ``"*"``, ``".suffix"`` or a host name/address.

    The port of ``"name:port"`` is dropped (the Host check ignores ports); ``"*.corp.example"``
    means the same as ``".corp.example"``. Raises ``ValueError`` for anything else (a URL, an
    empty string).
    """
    if not isinstance(entry, str):
        raise ValueError(f"allowed_hosts: {entry!r} is not a string")
    e = entry.strip().lower()
    if e == "*":
        return "*"
    suffix = e.startswith((".", "*."))
    if suffix:
        e = e[e.index(".") + 1:]
    host = split_host(e)
    if host is None:
        raise ValueError(
            f"allowed_hosts: {entry!r} is not a host name; give names such as "
            "'desk.example.com', '.example.com' (a domain and its subdomains) or '*'")
    return "." + host if suffix else host


def machine_names() -> set[str]:
    """This machine's host name and fully qualified name (lowercased)."""
    names = set()
    for fn in (socket.gethostname, socket.getfqdn):
        try:
            name = split_host(fn())
        except OSError:
            continue
        if name:
            names.add(name)
    return names


class HostAllowlist:
    """The ``Host`` header values a server answers (its DNS-rebinding defence).

    Accepted: any IP address literal (a rebinding page can only send a *name*: its own);
    ``localhost``; the name the server was bound to; when it listens beyond loopback (``0.0.0.0``,
    ``::``, a LAN address or name) also this machine's host name and FQDN; and the entries of
    ``allowed_hosts`` (names; ``.example.com`` for a domain and its subdomains; ``*`` for any
    Host, which turns the check off).
    """

    def __init__(self, bind_host: str, allowed: Sequence[str] = ()) -> None:
        entries = [parse_allowed_host(e) for e in allowed]
        self.any_host = "*" in entries
        self.suffixes = tuple(sorted(e[1:] for e in entries if e.startswith(".")))
        names = {"localhost"}
        names.update(e for e in entries if e != "*" and not e.startswith("."))
        bound = split_host(bind_host) if bind_host not in WILDCARD_BINDS else None
        if bound is not None and _ip(bound) is None:
            names.add(bound)
        self.network = not is_loopback_bind(bind_host)
        if self.network:
            names.update(machine_names())
        self.names = frozenset(names)

    def allows(self, host_header: str | None) -> bool:
        """Whether a request with this ``Host`` header may be answered."""
        if self.any_host:
            return True
        host = split_host(host_header)
        if host is None:
            return False
        if _ip(host) is not None or host in self.names:
            return True
        return any(host == s or host.endswith("." + s) for s in self.suffixes)

    def describe(self) -> str:
        """What is accepted, for log lines."""
        if self.any_host:
            return "any Host (allowed_hosts '*': DNS rebinding protection is off)"
        parts = ["IP addresses", *sorted(self.names), *(f"*.{s}" for s in self.suffixes)]
        return ", ".join(parts)


# -- Origin -------------------------------------------------------------------------------------


def origin_allowed(origin: str, host_header: str, allowed: list[str]) -> bool:
    """The origin rule: same host as the request, localhost, or the allowlist."""
    if "*" in allowed:
        return True
    parsed = urlparse(origin)
    o_host = (parsed.hostname or "").lower()
    if origin in allowed or o_host in (a.lower() for a in allowed):
        return True
    req_host = urlparse("//" + host_header).hostname or ""
    if o_host and o_host == req_host.lower():
        return True
    return o_host in ("localhost", "127.0.0.1", "::1")


def cross_origin_refusal(headers: Mapping[str, str], host_header: str,
                         allowed: list[str]) -> str | None:
    """Why a state-changing request (``POST``) is refused as cross-site; ``None`` to accept.

    The same rule as the WebSocket handshake's (:func:`origin_allowed`), plus the browser's
    ``Sec-Fetch-Site`` hint: ``same-origin`` / ``none`` (typed by the user) pass; a request that
    says ``cross-site`` / ``same-site`` must carry an allowed ``Origin``; a request with neither
    header is not from a browser and passes.
    """
    site = (headers.get("Sec-Fetch-Site") or "").strip().lower()
    origin = headers.get("Origin")
    if site in ("same-origin", "none"):
        return None
    if origin is None:
        if site:
            return f"a {site} request without an Origin header is not allowed"
        return None
    if origin_allowed(origin, host_header, allowed):
        return None
    return (f"requests from origin {origin!r} are not allowed; list it in the server's "
            "allowed_origins (livestream serve --allow-origin) to let that site publish")


def media_type(content_type: str | None) -> str:
    """``"Application/JSON; charset=utf-8"`` → ``"application/json"``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


# -- proxies ------------------------------------------------------------------------------------


def _hop_ip(hop: str) -> str | None:
    """An address from one ``X-Forwarded-For`` entry (``1.2.3.4``, ``1.2.3.4:5678``,
    ``[2001:db8::1]:443``, ``2001:db8::1``), as text; ``None`` if it is not one."""
    h = hop.strip()
    if h.startswith("["):
        h = h[1:h.find("]")] if "]" in h else ""
    elif h.count(":") == 1:
        h = h.split(":", 1)[0]
    addr = _ip(h)
    return str(addr) if addr is not None else None


class TrustedProxies:
    """Proxy addresses (IPs or CIDR networks) whose forwarding headers are believed."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.networks = tuple(parse_trusted_proxy(e) for e in entries)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, ip: str) -> bool:
        """Whether ``ip`` is one of the listed proxies."""
        addr = _ip(ip)
        return addr is not None and any(addr in net for net in self.networks)

    def client_ip(self, peer: str, headers: Mapping[str, str]) -> str:
        """The client's address: ``peer`` unless ``peer`` is a trusted proxy.

        From a trusted proxy: ``X-Forwarded-For`` read right to left, skipping trusted proxies,
        up to the first address that is not one (an entry that is not an address stops the walk
        at the last trusted hop); without that header, ``X-Real-Ip`` if it is an address.
        """
        if not self.networks or not self.trusts(peer):
            return peer
        chain = [h for h in (headers.get("X-Forwarded-For") or "").split(",") if h.strip()]
        if chain:
            client = peer
            for hop in reversed(chain):
                ip = _hop_ip(hop)
                if ip is None:
                    break
                client = ip
                if not self.trusts(ip):
                    break
            return client
        real = _hop_ip(headers.get("X-Real-Ip") or "")
        return real if real is not None else peer

    def protocol(self, peer: str, headers: Mapping[str, str]) -> str | None:
        """``http`` / ``https`` from ``X-Forwarded-Proto`` / ``X-Scheme`` of a trusted proxy."""
        if not self.networks or not self.trusts(peer):
            return None
        value = headers.get("X-Forwarded-Proto") or headers.get("X-Scheme") or ""
        proto = value.split(",")[-1].strip().lower()
        return proto if proto in ("http", "https") else None


def parse_trusted_proxy(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A ``trusted_proxies`` entry (``10.0.0.1``, ``10.0.0.0/8``, ``::1``) as a network."""
    try:
        return ipaddress.ip_network(str(entry).strip(), strict=False)
    except ValueError:
        raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or network "
                         "(e.g. 10.0.0.5 or 10.0.0.0/8)") from None


# -- the guard a handler calls --------------------------------------------------------------------


class RequestGuard:
    """Applies the checks above to a Tornado request (a handler's ``prepare()``)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.hosts = HostAllowlist(config.host, config.allowed_hosts)
        self.proxies = TrustedProxies(config.trusted_proxies)

    def apply_proxy(self, request: Any) -> None:
        """Replace ``request.remote_ip`` / ``protocol`` with what a trusted proxy forwarded."""
        if not self.proxies:
            return
        peer = request.remote_ip
        request.remote_ip = self.proxies.client_ip(peer, request.headers)
        proto = self.proxies.protocol(peer, request.headers)
        if proto is not None:
            request.protocol = proto

    def host_refusal(self, request: Any) -> str | None:
        """Why the request's ``Host`` is refused, or ``None``."""
        host = request.headers.get("Host")
        if host is None or self.hosts.allows(host):
            return None  # no Host header: HTTP/1.0 from a program, not a browser
        name = split_host(host)
        if name is None:
            return f"malformed Host header {host!r}"
        return (f"Host {name!r} is not allowed by this server (DNS rebinding protection); "
                f"start it with --allow-host {name} (ServerConfig.allowed_hosts) to answer "
                "that name")

    def cross_origin_refusal(self, request: Any) -> str | None:
        """Why a state-changing request is refused as cross-site, or ``None``."""
        return cross_origin_refusal(request.headers, request.host,
                                    self.config.allowed_origins)
