"""OAuth 2.0 client credentials: the token URL, and bearer tokens on every webhook."""

from __future__ import annotations

import base64
import json
import logging
import typing as t
import zlib

import pytest
from flask import Flask
from itsdangerous import URLSafeSerializer

from flask_posweb import PosWeb
from flask_posweb.auth.secrets import digest
from flask_posweb.auth.tokens import Claims
from flask_posweb.auth.tokens import TokenAuthority
from flask_posweb.auth.tokens import fingerprint
from flask_posweb.inbox import Filter
from flask_posweb.sending import sample
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient

from .conftest import MakeApp

SECRET = "client-secret-0123456789"
CLIENTS = {"dealpos": SECRET}
TOKEN_URL = "/dealpos/oauth/token"
SIGNING = "signing-key-0123456789"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def oauth_app(make_app: MakeApp, **config: t.Any) -> Flask:
    settings = {"POSWEB_API_KEYS": [], "POSWEB_OAUTH_CLIENTS": CLIENTS, "SECRET_KEY": SIGNING}
    return make_app(**(settings | config))


def token_for(client: t.Any, **kwargs: t.Any) -> t.Any:
    if "json" not in kwargs:
        kwargs.setdefault("data", {"grant_type": "client_credentials"})
    kwargs.setdefault("headers", basic("dealpos", SECRET))
    return client.post(TOKEN_URL, **kwargs)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_token_then_webhook(make_app: MakeApp) -> None:
    app = oauth_app(make_app)
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    response = token_for(client)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert (
        client.deliver("payment_created", headers=bearer(body["access_token"])).status_code == 200
    )


def test_a_refused_bearer_token_says_invalid_token(make_app: MakeApp) -> None:
    """RFC 6750 section 3.1 (Hostile bytes, 0.2)."""
    client: PosWebClient = oauth_app(make_app).test_client()  # type: ignore[assignment]
    token = token_for(client).json["access_token"]
    refused = client.deliver("payment_created", headers=bearer(token + "x"))
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == (
        'Bearer realm="DealPOS webhooks", error="invalid_token"'
    )
    none = client.deliver("payment_created", headers={"Authorization": ""})
    assert none.headers["WWW-Authenticate"] == 'Bearer realm="DealPOS webhooks"'


@pytest.mark.parametrize("how", ["form", "json"])
def test_client_credentials_in_the_body(make_app: MakeApp, how: str) -> None:
    client = oauth_app(make_app).test_client()
    fields = {"grant_type": "client_credentials", "client_id": "dealpos", "client_secret": SECRET}
    response = token_for(
        client, headers={}, **({"data": fields} if how == "form" else {"json": fields})
    )
    assert response.status_code == 200, response.json


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": {"grant_type": "password"}}, 400, "unsupported_grant_type"),
        ({"data": {}}, 400, "invalid_request"),  # no grant_type at all
        ({"data": "grant_type=client_credentials&grant_type=x"}, 400, "invalid_request"),
        ({"headers": basic("dealpos", "wrong")}, 401, "invalid_client"),
        ({"headers": basic("stranger", SECRET)}, 401, "invalid_client"),
        ({"headers": {}}, 400, "invalid_request"),
        (
            {
                "data": {
                    "grant_type": "client_credentials",
                    "client_id": "dealpos",
                    "client_secret": SECRET,
                }
            },
            400,
            "invalid_request",
        ),  # in two places
        (
            {"data": b"\xff\xfe", "content_type": "application/x-www-form-urlencoded"},
            400,
            "invalid_request",
        ),
        ({"data": "{}", "content_type": "text/plain"}, 400, "invalid_request"),
    ],
)
def test_token_errors_follow_rfc_6749(
    make_app: MakeApp, kwargs: dict[str, t.Any], status: int, code: str
) -> None:
    response = token_for(oauth_app(make_app).test_client(), **kwargs)
    assert response.status_code == status
    assert response.json["error"] == code
    assert SECRET not in response.get_data(as_text=True)
    if code == "invalid_client":
        assert response.headers["WWW-Authenticate"].startswith("Basic ")


def test_deeply_nested_json_at_the_token_url_is_a_400_not_a_500(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    """Hostile bytes, finding 4: RecursionError escaped get_json(silent=True)."""
    nested = "[" * 7000 + "]" * 7000  # within the size limit, past the recursion limit
    with caplog.at_level(logging.ERROR, "flask_posweb"):
        response = token_for(
            oauth_app(make_app).test_client(),
            data=nested,
            content_type="application/json",
            headers={},
        )
    assert response.status_code == 400 and response.json["error"] == "invalid_request"
    assert "nested too deeply" in response.json["error_description"]
    assert caplog.records == []


def test_token_url_takes_only_post(make_app: MakeApp) -> None:
    response = oauth_app(make_app).test_client().get(TOKEN_URL)
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    assert response.is_json


def test_token_url_without_oauth_is_not_found(client: PosWebClient) -> None:
    assert token_for(client).status_code == 404


def test_tokens_expire(make_app: MakeApp) -> None:
    app = oauth_app(make_app, POSWEB_TOKEN_TTL="1m")
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    token = token_for(client).json["access_token"]
    authority = get_state(app).tokens
    assert authority is not None
    now = authority.clock()
    authority.clock = lambda: now + 59
    assert client.deliver("invoice_created", headers=bearer(token)).status_code == 200
    authority.clock = lambda: now + 61
    assert client.deliver("payment_created", headers=bearer(token)).status_code == 401


def test_another_process_with_the_same_configuration_accepts_the_token(make_app: MakeApp) -> None:
    issuer, other = oauth_app(make_app), oauth_app(make_app)
    token = token_for(issuer.test_client()).json["access_token"]
    response = other.test_client().deliver("payment_created", headers=bearer(token))  # type: ignore[attr-defined]
    assert response.status_code == 200


def test_a_staging_token_is_refused_in_production(make_app: MakeApp) -> None:
    """Hostile bytes, finding 8: tokens now carry an audience."""
    staging, production = oauth_app(make_app), oauth_app(make_app)
    token = token_for(staging.test_client(), base_url="https://staging.shop.example").json[
        "access_token"
    ]
    client: PosWebClient = production.test_client()  # type: ignore[assignment]
    ok = client.deliver(
        "payment_created", headers=bearer(token), base_url="https://staging.shop.example"
    )
    assert ok.status_code == 200
    refused = client.deliver(
        "payment_created", headers=bearer(token), base_url="https://shop.example"
    )
    assert refused.status_code == 401


def test_an_explicit_audience_is_used_on_both_sides(make_app: MakeApp) -> None:
    app = oauth_app(make_app, POSWEB_TOKEN_AUDIENCE="urn:shop:production")
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    token = token_for(client, base_url="https://a.example").json["access_token"]
    answer = client.deliver("payment_created", headers=bearer(token), base_url="https://b.example")
    assert answer.status_code == 200  # the audience is the setting, whatever the host
    authority = get_state(app).tokens
    assert authority is not None and authority.read(token, "urn:shop:staging") is None


@pytest.mark.parametrize(
    ("config", "valid"),
    [
        ({"POSWEB_OAUTH_CLIENTS": {"dealpos": "rotated-0123456789"}}, False),
        ({"POSWEB_OAUTH_CLIENTS": {"dealpos": [SECRET, "rotated-0123456789"]}}, True),  # overlap
        ({"SECRET_KEY": "new-signing-key-0123456789"}, False),
        ({"POSWEB_OAUTH_SIGNING_KEY": [SIGNING, "newer-0123456789"]}, True),  # old key listed
        ({"POSWEB_OAUTH_CLIENTS": {"someone-else": SECRET}}, False),
    ],
)
def test_rotation_revokes_tokens(make_app: MakeApp, config: dict[str, t.Any], valid: bool) -> None:
    token = token_for(oauth_app(make_app).test_client()).json["access_token"]
    rotated = oauth_app(make_app, **config)
    response = rotated.test_client().deliver("payment_created", headers=bearer(token))  # type: ignore[attr-defined]
    assert response.status_code == (200 if valid else 401)


def test_the_test_kit_fetches_tokens_like_dealpos(make_app: MakeApp) -> None:
    client: PosWebClient = oauth_app(make_app).test_client()  # type: ignore[assignment]
    assert client.deliver("shift_closed").status_code == 200


def test_authority_is_pure_and_rejects_forgeries() -> None:
    now = [1_000_000.0]
    authority = TokenAuthority(["k"], ttl=10, clock=lambda: now[0])
    secret = digest("s")
    token = authority.issue("acme", "c", secret, "aud")["access_token"]
    assert authority.read(token, "aud") == Claims("acme", "c", fingerprint(secret))
    assert authority.read(token, "other") is None
    payload, _, signature = token.rpartition(".")
    forged = URLSafeSerializer("k").dumps({"m": "bravo", "c": "c", "f": "x", "aud": "aud"})
    assert authority.read(forged.rpartition(".")[0] + "." + signature, "aud") is None
    assert TokenAuthority(["other-key"]).read(token, "aud") is None
    for junk in ("", "a.b.c", "...", "\u00e9.x.y", "x" * 5000, payload):
        assert authority.read(junk, "aud") is None
    now[0] += 11
    assert authority.read(token, "aud") is None


def _token_of_0_2(client_id: str, secret: str, signing_key: str, audience: str, exp: int) -> str:
    """A token as Flask-PosWeb 0.2 issued it (its ``TokenAuthority.issue``)."""
    import hashlib
    import hmac as hmac_

    from itsdangerous import Signer

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    key = hmac_.new(signing_key.encode(), f"{client_id}\0{secret}".encode(), hashlib.sha256)
    signer = Signer(
        [key.digest()],
        salt="flask-posweb.access-token.v2",
        key_derivation="hmac",
        digest_method=hashlib.sha256,
    )
    claims = json.dumps({"aud": audience, "exp": exp}).encode()
    return signer.sign(f"{b64(client_id.encode())}.{b64(claims)}").decode("ascii")


def test_a_token_issued_by_0_2_works_until_it_expires(make_app: MakeApp) -> None:
    """0.2 promised that upgrades keep tokens working: DealPOS keeps its token for its
    lifetime, and a 401 is final for it (the delivery would be lost)."""
    app = oauth_app(make_app)
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    authority = get_state(app).tokens
    assert authority is not None
    audience = "http://localhost/dealpos/oauth/token"
    now = int(authority.clock())
    old = _token_of_0_2("dealpos", SECRET, SIGNING, audience, now + 60)
    assert client.deliver("payment_created", headers=bearer(old)).status_code == 200
    for refused in (
        _token_of_0_2("dealpos", SECRET, SIGNING, audience, now - 1),  # expired
        _token_of_0_2("dealpos", "wrong-secret-0123456789", SIGNING, audience, now + 60),
        _token_of_0_2("nobody", SECRET, SIGNING, audience, now + 60),
        _token_of_0_2("dealpos", SECRET, SIGNING, "https://staging/dealpos/oauth/token", now + 60),
    ):
        assert client.deliver("invoice_created", headers=bearer(refused)).status_code == 401


def test_the_newest_key_signs_and_the_older_ones_still_verify() -> None:
    old = TokenAuthority(["old-key"]).issue(None, "c", digest("s"), "aud")["access_token"]
    rotated = TokenAuthority(["old-key", "new-key"])
    assert rotated.read(old, "aud") is not None
    new = rotated.issue(None, "c", digest("s"), "aud")["access_token"]
    assert TokenAuthority(["new-key"]).read(new, "aud") is not None
    assert TokenAuthority(["old-key"]).read(new, "aud") is None


def test_nothing_in_a_token_is_read_before_its_signature_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hostile bytes, finding 3: 0.1 inflated and parsed a token's payload
    (``loads_unsafe``) before checking it: 8 KB cost 132 ms and 300 MiB."""
    authority = TokenAuthority(["k"])
    bomb = base64.urlsafe_b64encode(zlib.compress(b"[" * 10_000_000)).decode()

    def forbidden(*args: t.Any, **kwargs: t.Any) -> t.NoReturn:
        raise AssertionError("read before the signature was checked")

    monkeypatch.setattr(zlib, "decompress", forbidden)
    monkeypatch.setattr(json, "loads", forbidden)
    for token in (f".{bomb[:900]}.AAAA.sig", f".{bomb}", f"{bomb[:500]}.x.y", "a" * 8192):
        assert authority.read(token, "aud") is None


# -- throttling with the host's Flask-Limiter: Hostile bytes, finding 7 ----------------


def test_failed_token_requests_are_throttled_with_flask_limiter(make_app: MakeApp) -> None:
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    app = oauth_app(make_app, POSWEB_TOKEN_RATE_LIMIT="3 per minute")
    Limiter(get_remote_address, app=app, storage_uri="memory://")
    client = app.test_client()
    assert token_for(client).status_code == 200  # successes are not counted
    statuses = [token_for(client, headers=basic("dealpos", "guess")).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    throttled = token_for(client, headers=basic("dealpos", "guess"))
    assert (
        throttled.json["error"] == "invalid_request" and int(throttled.headers["Retry-After"]) >= 1
    )
    assert token_for(client).status_code == 429  # the address waits out the window


def test_without_a_limiter_oauth_warns_that_the_token_url_is_unthrottled(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "flask_posweb"):
        oauth_app(make_app)
    assert "The OAuth token URL is not throttled" in caplog.text


def test_trusted_hosts_keep_a_staging_token_out_whatever_the_host_header(
    make_app: MakeApp,
) -> None:
    """The default audience follows the Host header, which the client chooses;
    Flask's TRUSTED_HOSTS refuses a production request that claims staging's."""
    staging = oauth_app(make_app)
    production = oauth_app(make_app, TRUSTED_HOSTS=["shop.example"])
    token = token_for(staging.test_client(), base_url="https://staging.shop.example").json[
        "access_token"
    ]
    client: PosWebClient = production.test_client()  # type: ignore[assignment]
    spoofed = client.post(
        "/dealpos/payment-created",
        data=sample("payment_created"),
        headers={**bearer(token), "Content-Type": "application/json"},
        base_url="https://staging.shop.example",
    )
    assert spoofed.status_code == 400
    assert spoofed.json == {
        "status": "error",
        "message": "Host 'staging.shop.example' is not trusted.",
    }
    assert not get_state(production).require_inbox().deliveries(Filter())
    own = client.deliver("payment_created", base_url="https://shop.example")
    assert own.status_code == 200  # the kit fetched a token for the trusted host
    assert client.deliver("payment_created").status_code == 200  # and goes there by default


def test_a_token_works_at_every_mount_of_the_blueprint(make_app: MakeApp, posweb: PosWeb) -> None:
    """The audience is the first mount's token URL, the one the OpenAPI
    description gives, whichever mount the token is fetched from or used at."""
    app = oauth_app(make_app)
    app.register_blueprint(posweb.blueprint, url_prefix="/dealpos2", name="second")
    client = app.test_client()
    first = token_for(client).json["access_token"]
    second = client.post(
        "/dealpos2/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic("dealpos", SECRET),
    ).json["access_token"]
    for token in (first, second):
        for prefix in ("/dealpos", "/dealpos2"):
            answer = client.post(
                f"{prefix}/payment-created",
                data=sample("payment_created"),
                headers={**bearer(token), "Content-Type": "application/json"},
            )
            assert answer.status_code == 200, (prefix, answer.json)
