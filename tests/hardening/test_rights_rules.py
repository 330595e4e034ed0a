"""Per-topic rights, the pure rules (livestream.server.auth): grants, patterns, static and
signed tokens, minting. No server here; the server-side behaviour is in test_rights.py."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from livestream.errors import AuthError
from livestream.server.auth import (
    Authenticator,
    Grant,
    TokenError,
    VerifyKey,
    check_patterns,
    mint_token,
    parse_duration,
)
from livestream.server.config import ServerConfig

SECRET = b"k" * 48


def hs_auth(**kw) -> Authenticator:
    return Authenticator(keys=[VerifyKey(SECRET, ("HS256",))], **kw)


def test_patterns_are_case_sensitive_globs_over_topic_names():
    g = Grant(sub=("prices.*", "fx/[A-Z][A-Z][A-Z]", "orders"))
    assert g.allows("subscribe", "prices.AAPL")
    assert g.allows("subscribe", "prices.eu.SAP")  # * crosses dots
    assert not g.allows("subscribe", "prices")
    assert not g.allows("subscribe", "Prices.AAPL")
    assert g.allows("subscribe", "fx/EUR") and not g.allows("subscribe", "fx/eur")
    assert g.allows("subscribe", "orders") and not g.allows("subscribe", "orders2")
    assert not g.allows("publish", "orders")  # sub is not pub
    with pytest.raises(ValueError, match="invalid pattern"):
        check_patterns(["ok", "bad pattern"])
    with pytest.raises(ValueError, match="at most"):
        check_patterns([f"t{i}" for i in range(300)])


def test_creating_needs_admin_or_a_publish_pattern_naming_the_topic():
    g = Grant(pub=("orders", "prices.*"), admin=("scratch.*",))
    assert g.allows("create", "orders")  # the common case: allowed orders, creates orders
    assert g.allows("publish", "prices.NEW") and not g.allows("create", "prices.NEW")
    assert g.allows("create", "scratch.x") and g.allows("delete", "scratch.x")
    assert g.allows("publish", "scratch.x") and g.allows("subscribe", "scratch.x")  # owner
    assert not g.allows("delete", "orders") and not g.allows("subscribe", "orders")
    static_pub = Grant(pub=("*",), pub_creates=True)  # the static publish token, as before
    assert static_pub.allows("create", "anything") and not static_pub.allows("delete", "x")


def test_no_auth_configured_allows_everything_and_delete_from_loopback_only():
    auth = Authenticator()
    remote, local = auth.anonymous(loopback=False), auth.anonymous(loopback=True)
    for action in ("subscribe", "publish", "create"):
        assert remote.allows(action, "t") and local.allows(action, "t")
    assert not remote.allows("delete", "t") and local.allows("delete", "t")
    # with any auth configured, loopback is no privilege
    assert not Authenticator(admin_token="a").anonymous(loopback=True).allows("delete", "t")


def test_static_tokens_keep_their_meaning():
    auth = Authenticator(subscribe_token="s", publish_token="p", admin_token="a")
    assert auth.grant("s").allows("subscribe", "t") and not auth.grant("s").allows("publish", "t")
    assert auth.grant("p").allows("create", "t") and not auth.grant("p").allows("subscribe", "t")
    assert not auth.grant("p").allows("delete", "t")
    assert all(auth.grant("a").allows(a, "t") for a in ("subscribe", "publish", "create",
                                                       "delete"))
    nothing = auth.grant("wrong")
    assert not nothing.any() and nothing.refused
    with pytest.raises(AuthError, match="subscribe token is required"):
        auth.check(auth.grant(None), "subscribe", "t")
    # a subscribe token only: publishing stays open, as before
    only_sub = Authenticator(subscribe_token="s")
    assert only_sub.grant(None).allows("publish", "t")
    assert only_sub.grant("junk").allows("create", "t")


def test_signed_token_grants_its_claim_patterns_until_exp():
    auth = hs_auth()
    tok = mint_token(SECRET, sub=["prices.*"], pub="orders", ttl=60, subject="alice")
    g = auth.grant(tok)
    assert g.sub == ("prices.*",) and g.pub == ("orders",) and g.admin == ()
    assert g.subject == "alice" and g.exp is not None and g.exp > time.time()
    # the JWT registered claim "sub" is the subject string; rights are namespaced
    claims = jwt.decode(tok, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["livestream"] == {"sub": ["prices.*"],
                                                                 "pub": ["orders"]}
    # a signed-token server requires a token for everything
    assert not auth.grant(None).any()
    with pytest.raises(AuthError, match="does not allow subscribe"):
        auth.check(g, "subscribe", "orders")
    # checked at use time against exp, with the cached grant too
    with pytest.raises(TokenError, match="expired") as exc:
        auth.verify(tok, now=g.exp + 1)
    assert exc.value.expired


@pytest.mark.parametrize("claims, why", [
    ({"livestream": {"sub": ["a"]}}, "'exp'"),
    ({"livestream": {"sub": ["a"]}, "exp": 1}, "expired"),
    ({"livestream": {"sub": ["a"]}, "exp": 2**40, "nbf": 2**39}, "not valid yet"),
    ({"livestream": {"sub": ["a"]}, "exp": 2**40, "aud": "other"}, "audience"),
    ({"livestream": {"sub": "bad topic"}, "exp": 2**40}, "malformed"),
    ({"livestream": ["a"], "exp": 2**40}, "'livestream' claim"),
    ({"sub": "alice", "exp": 2**40}, "'livestream' claim"),
])
def test_bad_signed_tokens_are_refused_with_a_reason(claims, why):
    auth = hs_auth()
    with pytest.raises(TokenError, match=why):
        auth.verify(jwt.encode(claims, SECRET, algorithm="HS256"))


def test_wrong_key_algorithm_and_audience():
    auth = hs_auth(audience="desk")
    ok = mint_token(SECRET, sub="a", audience="desk")
    assert auth.verify(ok).sub == ("a",)
    with pytest.raises(TokenError, match="'aud'"):
        auth.verify(mint_token(SECRET, sub="a"))  # the server wants an audience
    with pytest.raises(TokenError, match="signature"):
        auth.verify(mint_token(b"x" * 48, sub="a", audience="desk"))
    with pytest.raises(TokenError, match="HS512"):
        auth.verify(mint_token(b"k" * 64, sub="a", audience="desk", algorithm="HS512"))
    with pytest.raises(TokenError, match="not valid"):
        auth.verify("not-a-jwt")
    # 'none' is never accepted
    unsigned = jwt.encode({"livestream": {"sub": ["a"]}, "exp": 2**40}, None, algorithm="none")
    with pytest.raises(TokenError):
        auth.verify(unsigned)


@pytest.mark.parametrize("make_key, alg", [
    (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
    (lambda: ec.generate_private_key(ec.SECP256R1()), "ES256"),
])
def test_public_key_tokens(tmp_path, make_key, alg):
    key = make_key()
    priv = tmp_path / "key.pem"
    pub = tmp_path / "key.pub.pem"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    auth = Authenticator.from_config(ServerConfig(jwt_public_key_file=str(pub)))
    tok = mint_token(key, algorithm=alg, pub=["orders"])
    assert auth.verify(tok).pub == ("orders",)
    # an HS256 token signed with the public key's bytes (algorithm confusion) is refused
    forged = jwt.encode({"livestream": {"admin": ["*"]}, "exp": 2**40}, b"p" * 64,
                        algorithm="HS256")
    with pytest.raises(TokenError, match="HS256"):
        auth.verify(forged)


def test_config_refuses_short_secrets_and_unknown_algorithms(tmp_path):
    short = tmp_path / "short"
    short.write_text("too short\n")
    with pytest.raises(ValueError, match="at least 32"):
        Authenticator.from_config(ServerConfig(jwt_secret_file=str(short)))
    with pytest.raises(ValueError, match="unsupported"):
        ServerConfig(jwt_algorithms=["none"])
    with pytest.raises(ValueError, match="max_topics"):
        ServerConfig(max_topics=0)
    with pytest.raises(ValueError, match="at least one"):
        mint_token(SECRET)
    with pytest.raises(ValueError, match="HS512 needs at least 64"):
        mint_token(SECRET, sub="a", algorithm="HS512")


def test_parse_duration():
    assert parse_duration("90") == 90 and parse_duration("15m") == 900
    assert parse_duration("1h") == 3600 and parse_duration("2d") == 172800
    for bad in ("", "1w", "-1h", "0s", "h"):
        with pytest.raises(ValueError):
            parse_duration(bad)
