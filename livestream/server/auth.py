"""Who may do what: tokens, grants, and the rules that check them.

A request (a WebSocket message, an HTTP request) carries at most one token. The
:class:`Authenticator` turns it into a :class:`Grant`: glob patterns of topic
names the bearer may subscribe to (``sub``), publish to (``pub``) and
administer (``admin``: create and delete, and also subscribe and publish: the
owner of a topic may do everything with it), and the time the grant ends
(``exp``). The same rules serve the WebSocket and the HTTP endpoints; this
module does no I/O except reading key files in :meth:`Authenticator.from_config`.

Tokens are

- **static tokens** (``subscribe_token``, ``publish_token``, ``admin_token``):
  shared secrets compared in constant time. The subscribe token grants
  subscribe on every topic; the publish token grants publish on every topic and
  creating a topic by publishing to it (as before signed tokens existed); the
  admin token grants everything, deleting topics included.
- **signed tokens** (JWT, verified with PyJWT): HS256/384/512 with a shared
  secret (``jwt_secret_file``) or RS*/PS*/ES*/EdDSA with a public key
  (``jwt_public_key_file``). Their rights are in the namespaced claim
  ``livestream``: ``{"livestream": {"sub": [...], "pub": [...], "admin": [...]}}``
  (a string is accepted for a one-pattern list). ``exp`` is required; ``nbf`` and
  ``aud`` are checked when present (``aud`` must match ``jwt_audience``; a token
  with ``aud`` is refused by a server without one). The registered claim ``sub``
  keeps its JWT meaning (a string: who the bearer is) and only appears in logs.

Patterns are :func:`fnmatch.fnmatchcase` globs over topic names, case
sensitive: ``*`` matches any run of characters (``.`` and ``/`` included), ``?``
one character, ``[abc]`` / ``[!abc]`` one of / none of a set. ``prices.*``
matches ``prices.AAPL`` and ``prices.eu.SAP``, not ``prices``.

Creating a topic (the first publish to a name) needs ``admin`` on the name, or
a ``pub`` pattern that names it exactly (no wildcard): a publisher allowed
``orders`` creates ``orders``; one allowed ``prices.*`` publishes into existing
``prices.…`` topics but cannot define new ones unless it also has ``admin`` on
them. The static publish token creates any topic, as before.

Nothing configured (the default): everything is open, as before, and deleting a
topic is allowed from the loopback interface only.
"""

from __future__ import annotations

import hmac
import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import AuthError

if TYPE_CHECKING:
    from .config import ServerConfig

Action = Literal["subscribe", "publish", "create", "delete"]
ACTIONS: tuple[str, ...] = ("subscribe", "publish", "create", "delete")

#: The namespaced claim that holds a signed token's rights.
CLAIM = "livestream"
#: A pattern: topic-name characters plus the glob characters ``* ? [ ] !``.
PATTERN_RE = re.compile(r"^[A-Za-z0-9_\-.:/*?\[\]!]{1,256}$")
#: Patterns per right in one token (bounds the work of a check).
MAX_PATTERNS = 256
#: Longest token accepted, in characters (bounds the work of verifying one).
MAX_TOKEN_LENGTH = 8192
#: Shortest HMAC secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
MIN_SECRET_BYTES = 32

HMAC_ALGORITHMS: tuple[str, ...] = ("HS256", "HS384", "HS512")
PUBLIC_KEY_ALGORITHMS: tuple[str, ...] = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)
DEFAULT_PUBLIC_KEY_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256")


class TokenError(AuthError):
    """A token was given and refused; ``expired`` says whether only its time ran out."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


def check_patterns(value: Any, what: str = "pattern") -> tuple[str, ...]:
    """``value`` (a pattern or a list of them) as a tuple of valid patterns, else ``ValueError``."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError(f"{what}: expected a pattern or a list of patterns")
    if len(items) > MAX_PATTERNS:
        raise ValueError(f"{what}: {len(items)} patterns; at most {MAX_PATTERNS}")
    out: list[str] = []
    for p in items:
        if not isinstance(p, str) or not PATTERN_RE.match(p):
            raise ValueError(
                f"{what}: invalid pattern {p!r} (1-256 of A-Z a-z 0-9 _ - . : / and * ? [ ] !)")
        if p not in out:
            out.append(p)
    return tuple(out)


def matches(patterns: Sequence[str], topic: str) -> bool:
    """Whether any glob of ``patterns`` matches ``topic`` (case sensitive)."""
    return any(p == "*" or p == topic or fnmatchcase(topic, p) for p in patterns)


def _merge(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return a + tuple(p for p in b if p not in a)


@dataclass(frozen=True)
class Grant:
    """The rights of one token (or of no token): glob patterns per right, and an end.

    ``exp`` (seconds since the epoch) is when the grant ends (``None``: never);
    ``subject`` the JWT ``sub`` claim, for logs; ``pub_creates`` lets every
    ``pub`` pattern create topics (static publish token, open servers);
    ``refused`` says why a token given with the request was not accepted (the
    grant then holds only what needs no token).
    """

    sub: tuple[str, ...] = ()
    pub: tuple[str, ...] = ()
    admin: tuple[str, ...] = ()
    exp: float | None = None
    subject: str | None = None
    pub_creates: bool = False
    refused: str | None = field(default=None, compare=False)

    @classmethod
    def everything(cls) -> Grant:
        """Every right on every topic."""
        return cls(("*",), ("*",), ("*",), pub_creates=True)

    def allows(self, action: Action, topic: str) -> bool:
        """Whether this grant allows ``action`` on ``topic`` (time not considered)."""
        if action == "subscribe":
            return matches(self.sub, topic) or matches(self.admin, topic)
        if action == "publish":
            return matches(self.pub, topic) or matches(self.admin, topic)
        if action == "delete":
            return matches(self.admin, topic)
        if action == "create":
            return matches(self.admin, topic) or topic in self.pub or (
                self.pub_creates and matches(self.pub, topic))
        raise ValueError(f"unknown action {action!r}; expected one of {ACTIONS}")

    def any(self) -> bool:
        """Whether the grant holds any right at all."""
        return bool(self.sub or self.pub or self.admin)

    def expired(self, now: float | None = None, leeway: float = 0.0) -> bool:
        """Whether ``exp`` has passed (``leeway`` seconds of clock skew allowed)."""
        return self.exp is not None and (time.time() if now is None else now) >= self.exp + leeway

    def union(self, other: Grant) -> Grant:
        """The rights of both; it ends when the earlier of the two ends."""
        exps = [e for e in (self.exp, other.exp) if e is not None]
        return Grant(_merge(self.sub, other.sub), _merge(self.pub, other.pub),
                     _merge(self.admin, other.admin), min(exps) if exps else None,
                     other.subject or self.subject, self.pub_creates or other.pub_creates,
                     other.refused or self.refused)

    def claims(self) -> dict[str, list[str]]:
        """The ``livestream`` claim of a token carrying this grant."""
        return {k: list(v) for k, v in (("sub", self.sub), ("pub", self.pub),
                                       ("admin", self.admin)) if v}


@dataclass(frozen=True)
class VerifyKey:
    """A key that verifies signed tokens, with the algorithms it accepts."""

    key: Any
    algorithms: tuple[str, ...]


def read_secret(path: str | Path) -> bytes:
    """An HMAC secret from a file (surrounding whitespace stripped); at least 32 bytes."""
    data = Path(path).read_bytes().strip()
    if len(data) < MIN_SECRET_BYTES:
        raise ValueError(f"the secret in {path} has {len(data)} bytes; use at least "
                         f"{MIN_SECRET_BYTES} (e.g. `openssl rand -base64 48 > {path}`)")
    return data


def hmac_key_bytes(algorithm: str) -> int:
    """Shortest secret for an HMAC algorithm: its hash size (RFC 7518 §3.2)."""
    return {"HS256": 32, "HS384": 48, "HS512": 64}[algorithm]


class Authenticator:
    """Turns the token of a request into a :class:`Grant`, and checks grants.

    Static tokens are compared in constant time; signed tokens are verified once
    and their grant cached (at most ``cache_size`` tokens; expiry is still checked
    at every use).
    """

    def __init__(
        self,
        *,
        subscribe_token: str | None = None,
        publish_token: str | None = None,
        admin_token: str | None = None,
        keys: Sequence[VerifyKey] = (),
        audience: str | None = None,
        leeway: float = 0.0,
        cache_size: int = 1024,
    ) -> None:
        self.subscribe_token = subscribe_token
        self.publish_token = publish_token
        self.admin_token = admin_token
        self.keys = tuple(keys)
        self.audience = audience
        self.leeway = float(leeway)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Grant] = OrderedDict()
        self.configured = bool(subscribe_token or publish_token or admin_token or self.keys)
        open_sub = subscribe_token is None and not self.keys
        open_pub = publish_token is None and not self.keys
        self._anonymous = Grant(("*",) if open_sub else (), ("*",) if open_pub else (),
                                pub_creates=open_pub)
        self._loopback = self._anonymous.union(Grant(admin=("*",))) if not self.configured \
            else self._anonymous

    @classmethod
    def from_config(cls, cfg: ServerConfig) -> Authenticator:
        """The authenticator of a server's settings (reads the key files)."""
        keys: list[VerifyKey] = []
        algs = tuple(cfg.jwt_algorithms or ())
        if cfg.jwt_secret_file is not None:
            mine = tuple(a for a in algs if a in HMAC_ALGORITHMS) if algs else ("HS256",)
            secret = read_secret(cfg.jwt_secret_file)
            need = max((hmac_key_bytes(a) for a in mine), default=MIN_SECRET_BYTES)
            if len(secret) < need:
                raise ValueError(f"the secret in {cfg.jwt_secret_file} has {len(secret)} bytes; "
                                 f"{', '.join(mine)} needs at least {need}")
            keys.append(VerifyKey(secret, mine))
        if cfg.jwt_public_key_file is not None:
            mine = tuple(a for a in algs if a in PUBLIC_KEY_ALGORITHMS) if algs \
                else DEFAULT_PUBLIC_KEY_ALGORITHMS
            keys.append(VerifyKey(load_public_key(cfg.jwt_public_key_file), mine))
        keys = [k for k in keys if k.algorithms]
        if (cfg.jwt_secret_file or cfg.jwt_public_key_file) and not keys:
            raise ValueError(f"jwt_algorithms {list(algs)} fit none of the configured keys")
        return cls(subscribe_token=cfg.subscribe_token, publish_token=cfg.publish_token,
                   admin_token=cfg.admin_token, keys=keys, audience=cfg.jwt_audience,
                   leeway=cfg.jwt_leeway)

    # -- grants ----------------------------------------------------------------------

    def anonymous(self, loopback: bool = False) -> Grant:
        """What a request without a token may do (``loopback``: it came from this machine)."""
        return self._loopback if loopback else self._anonymous

    def grant(self, token: str | None, *, loopback: bool = False,
              now: float | None = None) -> Grant:
        """The rights of a request bearing ``token``: what needs no token plus what the
        token grants. A refused token adds nothing and its reason is in ``refused``."""
        base = self.anonymous(loopback)
        if not token:
            return base
        try:
            return base.union(self.verify(token, now))
        except TokenError as exc:
            return Grant(base.sub, base.pub, base.admin, base.exp, base.subject,
                         base.pub_creates, refused=str(exc))

    def verify(self, token: str, now: float | None = None) -> Grant:
        """The grant of ``token`` alone; raises :class:`TokenError` if it is refused."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise TokenError("the token is too long" if isinstance(token, str)
                             else "the token must be a string")
        static = self._static(token)
        if static is not None:
            return static
        if not self.keys:
            raise TokenError("the token is not valid")
        now = time.time() if now is None else now
        cached = self._cache.get(token)
        if cached is None:
            cached = self._decode(token)
            self._cache[token] = cached
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(token)
        if cached.expired(now, self.leeway):
            raise TokenError("the token has expired", expired=True)
        return cached

    def _static(self, token: str) -> Grant | None:
        g: Grant | None = None
        for secret, grant in (
            (self.subscribe_token, Grant(sub=("*",))),
            (self.publish_token, Grant(pub=("*",), pub_creates=True)),
            (self.admin_token, Grant.everything()),
        ):
            if secret and hmac.compare_digest(token.encode(), secret.encode()):
                g = grant if g is None else g.union(grant)
        return g

    def _decode(self, token: str) -> Grant:
        import jwt

        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            raise TokenError("the token is not valid (neither a static token nor a JWT)") from None
        key = next((k for k in self.keys if alg in k.algorithms), None)
        if key is None:
            accepted = sorted({a for k in self.keys for a in k.algorithms})
            raise TokenError(f"the token is signed with {alg!r}; this server accepts "
                             f"{', '.join(accepted)}")
        try:
            claims = jwt.decode(token, key.key, algorithms=list(key.algorithms),
                                audience=self.audience, leeway=self.leeway,
                                options={"require": ["exp"]})
        except jwt.ExpiredSignatureError:
            raise TokenError("the token has expired", expired=True) from None
        except jwt.ImmatureSignatureError:
            raise TokenError("the token is not valid yet (nbf or iat in the future)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidAudienceError:
            raise TokenError("the token's audience (aud) is not this server's") from None
        except jwt.InvalidSignatureError:
            raise TokenError("the token's signature is not valid") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"the token is not valid: {exc}") from None
        return grant_from_claims(claims)

    # -- checks ----------------------------------------------------------------------

    def check(self, grant: Grant, action: Action, topic: str, now: float | None = None) -> None:
        """Raise :class:`AuthError` unless ``grant`` allows ``action`` on ``topic`` now."""
        if grant.allows(action, topic) and not grant.expired(now, self.leeway):
            return
        raise AuthError(self.denial(grant, action, topic, now))

    def denial(self, grant: Grant, action: Action, topic: str, now: float | None = None) -> str:
        """Why ``grant`` does not allow ``action`` on ``topic`` (an error message)."""
        if grant.refused:
            return f"{action} {topic!r}: a valid token is required ({grant.refused})"
        if grant.expired(now, self.leeway):
            return f"{action} {topic!r}: the token has expired"
        if action == "create" and grant.allows("publish", topic):
            return (f"creating topic {topic!r} needs the admin right on it, or a publish "
                    "pattern that names it exactly; this token may only publish to it "
                    "once it exists")
        if action == "delete" and not self.configured:
            return (f"delete {topic!r}: without auth configured, topics can only be deleted "
                    "from this machine (loopback); configure an admin token")
        if not grant.any() and action != "delete":
            return f"a valid {'subscribe' if action == 'subscribe' else 'publish'} token is required"
        need = {"subscribe": "sub", "publish": "pub", "create": "admin", "delete": "admin"}
        return f"this token does not allow {action} on {topic!r} (needs {need[action]})"


def grant_from_claims(claims: dict[str, Any]) -> Grant:
    """The grant of a verified token's claims; raises :class:`TokenError` if malformed."""
    rights = claims.get(CLAIM)
    if not isinstance(rights, dict):
        raise TokenError(f"the token has no {CLAIM!r} claim (an object of sub/pub/admin "
                         "patterns)")
    try:
        sub = check_patterns(rights.get("sub"), f"{CLAIM}.sub")
        pub = check_patterns(rights.get("pub"), f"{CLAIM}.pub")
        admin = check_patterns(rights.get("admin"), f"{CLAIM}.admin")
    except ValueError as exc:
        raise TokenError(f"the token's rights are malformed: {exc}") from None
    exp = claims.get("exp")
    subject = claims.get("sub")
    return Grant(sub, pub, admin, float(exp) if exp is not None else None,
                 subject if isinstance(subject, str) else None)


def load_public_key(path: str | Path) -> Any:
    """A PEM public key (RSA, EC or Ed25519) from a file, for verifying signed tokens."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    data = Path(path).read_bytes()
    try:
        return load_pem_public_key(data)
    except ValueError as exc:
        raise ValueError(f"{path} does not hold a PEM public key: {exc}") from None


def load_private_key(path: str | Path) -> tuple[Any, str]:
    """A PEM private key from a file and the algorithm it signs with by default
    (RS256 for RSA, ES256/ES384/ES512 for EC P-256/384/521, EdDSA for Ed25519)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = Path(path).read_bytes()
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} does not hold an unencrypted PEM private key: {exc}") from None
    if isinstance(key, rsa.RSAPrivateKey):
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(
            key.curve.name)
        if alg is None:
            raise ValueError(f"{path}: EC curve {key.curve.name} is not usable for JWT")
        return key, alg
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key, "EdDSA"
    raise ValueError(f"{path}: unsupported key type {type(key).__name__}")


def mint_token(
    key: Any,
    *,
    algorithm: str = "HS256",
    sub: Iterable[str] | str = (),
    pub: Iterable[str] | str = (),
    admin: Iterable[str] | str = (),
    ttl: float = 3600.0,
    audience: str | None = None,
    not_before: float | None = None,
    subject: str | None = None,
    now: float | None = None,
) -> str:
    """A signed token granting ``sub``/``pub``/``admin`` patterns for ``ttl`` seconds.

    ``key``: the HMAC secret (bytes/str, at least 32 bytes) for HS*, or a private
    key for RS*/PS*/ES*/EdDSA. ``not_before`` (seconds since the epoch) delays the
    start; the token then lasts ``ttl`` seconds from it. ``subject`` names the
    bearer (the JWT ``sub`` claim, shown in server logs).
    """
    import jwt

    if algorithm not in HMAC_ALGORITHMS + PUBLIC_KEY_ALGORITHMS:
        raise ValueError(f"unsupported algorithm {algorithm!r}")
    if algorithm in HMAC_ALGORITHMS:
        raw = key.encode() if isinstance(key, str) else bytes(key)
        need = hmac_key_bytes(algorithm)
        if len(raw) < need:
            raise ValueError(f"the secret has {len(raw)} bytes; {algorithm} needs at least {need}")
        key = raw
    if ttl <= 0:
        raise ValueError("ttl must be positive (seconds)")
    grant = Grant(check_patterns(list(sub) if not isinstance(sub, str) else sub, "sub"),
                  check_patterns(list(pub) if not isinstance(pub, str) else pub, "pub"),
                  check_patterns(list(admin) if not isinstance(admin, str) else admin, "admin"))
    if not grant.any():
        raise ValueError("a token must grant at least one of sub, pub, admin")
    now = time.time() if now is None else now
    start = now if not_before is None else not_before
    claims: dict[str, Any] = {CLAIM: grant.claims(), "iat": int(now),
                              "exp": int(start + ttl)}
    if not_before is not None:
        claims["nbf"] = int(not_before)
    if audience is not None:
        claims["aud"] = audience
    if subject is not None:
        claims["sub"] = subject
    return jwt.encode(claims, key, algorithm=algorithm)


def parse_duration(text: str) -> float:
    """Seconds in ``"90"``, ``"90s"``, ``"15m"``, ``"1h"``, ``"7d"`` (positive); else ``ValueError``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise ValueError(f"{text!r} is not a duration (e.g. 90s, 15m, 1h, 7d)")
    value = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    if value <= 0:
        raise ValueError("a duration must be positive")
    return value
