"""Authentication: pure verifiers first, then each mode through the endpoint."""

from __future__ import annotations

import base64
import hmac
import typing as t
import warnings

import pytest
from flask import Flask

from flask_posweb import ConfigurationError
from flask_posweb import InsecureWebhookWarning
from flask_posweb import PosWeb
from flask_posweb.auth import Credentials
from flask_posweb.auth import hashed
from flask_posweb.auth.secrets import digests
from flask_posweb.auth.secrets import matches_any
from flask_posweb.auth.verification import Authenticator
from flask_posweb.auth.verification import Mode
from flask_posweb.auth.verification import parse_basic
from flask_posweb.exceptions import AuthenticationError
from flask_posweb.testing import PosWebClient

from .conftest import MakeApp


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def authenticator(**credentials: t.Any) -> Authenticator:
    """An authenticator of the app's own credentials, with the modes they need."""
    modes: list[Mode] = []
    if credentials.get("api_keys"):
        modes.append("api_key")
    if credentials.get("basic"):
        modes.append("basic")
    return Authenticator(Credentials(None, **credentials), None, modes)


def accepts(auth: Authenticator, headers: dict[str, str]) -> bool:
    try:
        auth.authenticate(headers)
    except AuthenticationError:
        return False
    return True


def test_api_key_accepts_every_configured_key() -> None:
    auth = authenticator(api_keys=["old", "new"])
    assert accepts(auth, {"X-API-Key": "old"})
    assert accepts(auth, {"X-API-Key": "new"})
    assert not accepts(auth, {"X-API-Key": "older"})
    assert not accepts(auth, {"X-API-Key": ""})
    assert not accepts(auth, {})


def test_a_stored_key_may_be_its_digest() -> None:
    auth = authenticator(api_keys=[hashed("the-key-itself-0123")])
    assert accepts(auth, {"X-API-Key": "the-key-itself-0123"})
    assert not accepts(auth, {"X-API-Key": hashed("the-key-itself-0123")})


def test_api_key_header_is_configurable() -> None:
    own = Credentials(None, api_keys=["k"])
    auth = Authenticator(own, None, ["api_key"], api_key_header="X-DealPOS-Key")
    assert accepts(auth, {"X-DealPOS-Key": "k"})
    assert not accepts(auth, {"X-API-Key": "k"})


def test_every_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    accepted = digests(["first", "second", "third"])
    calls.clear()
    assert matches_any("first", accepted)
    # No early exit on a match, and digests of one length, whatever the secrets' lengths.
    assert len(calls) == 3
    assert {len(a) for a, _ in calls} == {len(b) for _, b in calls} == {32}


def test_basic_accepts_every_pair_and_only_whole_pairs() -> None:
    auth = authenticator(basic={"dealpos": "s3cret", "backup": "other"})
    assert accepts(auth, basic("dealpos", "s3cret"))
    assert accepts(auth, basic("backup", "other"))
    assert not accepts(auth, basic("dealpos", "other"))
    assert not accepts(auth, basic("dealpos", ""))
    assert not accepts(auth, {"Authorization": "Basic !!!not-base64"})
    assert not accepts(auth, {"Authorization": "Bearer whatever"})


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Basic " + base64.b64encode(b"u:p:with:colons").decode(), ("u", "p:with:colons")),
        ("basic " + base64.b64encode(b"u:").decode(), ("u", "")),
        # No colon: werkzeug reads a user without a password (never a stored pair:
        # passwords have 16 characters or more).
        ("Basic " + base64.b64encode(b"no-colon").decode(), ("no-colon", "")),
        ("Basic " + base64.b64encode("ü:ß".encode()).decode(), ("ü", "ß")),
        ("Basic", None),
        ("Basic !!!", None),
        ("Bearer abc", None),
    ],
)
def test_parse_basic(header: str, expected: tuple[str, str] | None) -> None:
    assert parse_basic({"Authorization": header}) == expected


def test_authenticator_fails_closed_with_every_challenge() -> None:
    auth = authenticator(api_keys=["k"], basic={"u": "p"})
    auth.authenticate({"X-API-Key": "k"})
    auth.authenticate(basic("u", "p"))
    with pytest.raises(AuthenticationError) as refused:
        auth.authenticate({"X-API-Key": "x"})
    assert refused.value.headers()["WWW-Authenticate"] == (
        'ApiKey realm="DealPOS webhooks", header="X-API-Key", '
        'Basic realm="DealPOS webhooks", charset="UTF-8"'
    )
    with pytest.raises(AuthenticationError):
        Authenticator(None, None, []).authenticate({"X-API-Key": "k"})


# -- configuration and modes through the endpoint ------------------------------------


def test_no_credentials_is_a_configuration_error_naming_the_keys(tmp_path: t.Any) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    with pytest.raises(ConfigurationError) as error:
        app.register_blueprint(PosWeb().blueprint)
    for key in ("POSWEB_API_KEYS", "POSWEB_BASIC_AUTH", "POSWEB_OAUTH_CLIENTS", "POSWEB_NO_AUTH"):
        assert key in str(error.value)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("POSWEB_API_KEYS", [""], "non-empty"),
        ("POSWEB_API_KEYS", [3], "non-empty"),
        ("POSWEB_BASIC_AUTH", "user:pass", "map names to secrets"),
        ("POSWEB_OAUTH_CLIENTS", {"dealpos": ""}, "non-empty"),
        ("POSWEB_DISPATCH", "cron", "'inline', 'thread', 'worker' or 'celery'"),
        ("POSWEB_MAX_CONTENT_LENGTH", 0, "positive"),
        ("POSWEB_TOKEN_TTL", -1, "positive"),
        # Hostile bytes, finding 7: weak secrets were accepted.
        ("POSWEB_API_KEYS", ["k"], "at least 16.*secrets.token_urlsafe"),
        ("POSWEB_BASIC_AUTH", {"dealpos": "short"}, "at least 16.*secrets.token_urlsafe"),
        ("POSWEB_OAUTH_CLIENTS", {"dealpos": "x"}, "at least 16.*secrets.token_urlsafe"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(
    make_app: MakeApp, key: str, value: t.Any, message: str
) -> None:
    config = {key: value}
    if key.startswith("POSWEB_OAUTH") or key == "POSWEB_TOKEN_TTL":
        config |= {
            "SECRET_KEY": "s" * 16,
            "POSWEB_OAUTH_CLIENTS": config.get("POSWEB_OAUTH_CLIENTS", {"c": "s" * 16}),
        }
    with pytest.raises(ConfigurationError, match=message):
        make_app(**config)


def test_oauth_needs_a_signing_key(make_app: MakeApp) -> None:
    with pytest.raises(ConfigurationError, match="POSWEB_OAUTH_SIGNING_KEY or SECRET_KEY"):
        make_app(POSWEB_OAUTH_CLIENTS={"dealpos": "secret" * 3}, POSWEB_API_KEYS=[])


def test_no_auth_is_an_explicit_opt_in_that_warns(make_app: MakeApp) -> None:
    with pytest.warns(InsecureWebhookWarning, match="anyone who can reach"):
        app = make_app(POSWEB_API_KEYS=[], POSWEB_NO_AUTH=True)
    response = app.test_client().post(
        "/dealpos/payment-created", data=b"{}", content_type="application/json"
    )
    assert response.status_code == 422  # authenticated by nobody, still validated


def test_no_auth_with_credentials_is_ambiguous(make_app: MakeApp) -> None:
    with warnings.catch_warnings(), pytest.raises(ConfigurationError, match="one or the other"):
        make_app(POSWEB_NO_AUTH=True)


def test_basic_auth_mode(make_app: MakeApp) -> None:
    new, old = "new-password-0123456789", "old-password-0123456789"
    app = make_app(POSWEB_API_KEYS=[], POSWEB_BASIC_AUTH={"dealpos": [new, old]})
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    assert client.deliver("payment_created").status_code == 200  # the kit sends the first pair
    assert client.deliver("payment_created", headers=basic("dealpos", old)).status_code == 200
    refused = client.deliver("payment_created", headers=basic("dealpos", old + "x"))
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Basic ")


def test_several_modes_at_once(make_app: MakeApp) -> None:
    password = "password-0123456789"
    app = make_app(POSWEB_BASIC_AUTH=[("dealpos", password)])
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    assert client.deliver("invoice_created", headers=basic("dealpos", password)).status_code == 200
    assert client.deliver("invoice_created", key="test-key-0123456789").status_code == 200
    response = client.deliver("invoice_created", key="nope")
    assert response.status_code == 401
    assert "ApiKey" in response.headers["WWW-Authenticate"]
    assert "Basic" in response.headers["WWW-Authenticate"]


def test_unauthenticated_requests_are_never_stored(app: Flask, client: PosWebClient) -> None:
    from flask_posweb.state import get_state

    client.deliver("payment_created", key="wrong")
    client.deliver("payment_created", b"not json", key="wrong")
    assert sum(get_state(app).require_inbox().counts().values()) == 0
