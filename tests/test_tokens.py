"""OAuth 2.0 client credentials: the token URL, and bearer tokens on every webhook."""

from __future__ import annotations

import base64
import typing as t

import pytest
from flask import Flask

from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient
from flask_posweb.tokens import TokenAuthority

from .conftest import MakeApp

CLIENTS = {"dealpos": "client-secret"}
TOKEN_URL = "/dealpos/oauth/token"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def oauth_app(make_app: MakeApp, **config: t.Any) -> Flask:
    settings = {"POSWEB_API_KEYS": [], "POSWEB_OAUTH_CLIENTS": CLIENTS, "SECRET_KEY": "signing"}
    return make_app(**(settings | config))


def token_for(client: t.Any, **kwargs: t.Any) -> t.Any:
    if "json" not in kwargs:
        kwargs.setdefault("data", {"grant_type": "client_credentials"})
    kwargs.setdefault("headers", basic("dealpos", "client-secret"))
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
    refused = client.deliver("payment_created", headers=bearer(body["access_token"] + "x"))
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="DealPOS webhooks"'


@pytest.mark.parametrize("how", ["form", "json"])
def test_client_credentials_in_the_body(make_app: MakeApp, how: str) -> None:
    client = oauth_app(make_app).test_client()
    fields = {
        "grant_type": "client_credentials",
        "client_id": "dealpos",
        "client_secret": "client-secret",
    }
    response = token_for(
        client, headers={}, **({"data": fields} if how == "form" else {"json": fields})
    )
    assert response.status_code == 200, response.json


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": {"grant_type": "password"}}, 400, "unsupported_grant_type"),
        ({"data": {}}, 400, "unsupported_grant_type"),
        ({"headers": basic("dealpos", "wrong")}, 401, "invalid_client"),
        ({"headers": basic("stranger", "client-secret")}, 401, "invalid_client"),
        ({"headers": {}}, 400, "invalid_request"),
        (
            {
                "data": {
                    "grant_type": "client_credentials",
                    "client_id": "dealpos",
                    "client_secret": "client-secret",
                }
            },
            400,
            "invalid_request",
        ),  # in two places
    ],
)
def test_token_errors_follow_rfc_6749(
    make_app: MakeApp, kwargs: dict[str, t.Any], status: int, code: str
) -> None:
    response = token_for(oauth_app(make_app).test_client(), **kwargs)
    assert response.status_code == status
    assert response.json["error"] == code
    assert "client-secret" not in response.get_data(as_text=True)
    if code == "invalid_client":
        assert response.headers["WWW-Authenticate"].startswith("Basic ")


def test_token_url_takes_only_post(make_app: MakeApp) -> None:
    response = oauth_app(make_app).test_client().get(TOKEN_URL)
    assert response.status_code == 405 and response.headers["Allow"] == "POST"


def test_token_url_without_oauth_is_not_found(client: PosWebClient) -> None:
    assert token_for(client).status_code == 404


def test_tokens_expire(make_app: MakeApp) -> None:
    app = oauth_app(make_app, POSWEB_TOKEN_TTL=60)
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    token = token_for(client).json["access_token"]
    authority = get_state(app).settings.tokens
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


@pytest.mark.parametrize(
    ("config", "valid"),
    [
        ({"POSWEB_OAUTH_CLIENTS": {"dealpos": "rotated"}}, False),
        ({"POSWEB_OAUTH_CLIENTS": {"dealpos": ["client-secret", "rotated"]}}, True),  # overlap
        ({"SECRET_KEY": "new-signing-key"}, False),
        ({"POSWEB_OAUTH_SIGNING_KEY": ["signing", "newer"]}, True),  # old key still listed
        ({"POSWEB_OAUTH_CLIENTS": {"someone-else": "client-secret"}}, False),
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
    authority = TokenAuthority({"c": ["s"]}, ["k"], ttl=10, clock=lambda: now[0])
    token = authority.issue("c", "s")["access_token"]
    assert authority.verify(token) == "c"
    payload, signature = token.split(".")
    forged = base64.urlsafe_b64encode(b'{"sub":"c","exp":99999999999}').rstrip(b"=").decode()
    assert authority.verify(f"{forged}.{signature}") is None
    assert authority.verify("") is None and authority.verify("a.b.c") is None
    assert not authority.authenticate_client("c", "wrong")
    assert not authority.authenticate_client("nobody", "s")
    now[0] += 10
    assert authority.verify(token) is None
