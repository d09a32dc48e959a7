"""The OpenAPI description: a valid 3.1 document of every endpoint where the app
mounts it, with its configuration's security and answers the app really gives;
``flask posweb openapi``; ``<prefix>/openapi.json`` when enabled."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys
import typing as t

import pytest
from click.testing import Result
from flask import Flask
from flask import url_for
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from flask_posweb import EVENTS
from flask_posweb import PosWeb
from flask_posweb.exceptions import ConfigurationError
from flask_posweb.exceptions import InsecureWebhookWarning
from flask_posweb.loyalty import CALLS
from flask_posweb.loyalty import CouponRefused
from flask_posweb.loyalty import LoyaltyCall
from flask_posweb.openapi import openapi_document
from flask_posweb.openapi import openapi_json
from flask_posweb.sending import sample
from flask_posweb.testing import PosWebClient

from .conftest import KEY
from .conftest import MakeApp

Json = dict[str, t.Any]
SECRET = "s3cret-s3cret-s3cret"
ALL_MODES: Json = {
    "POSWEB_BASIC_AUTH": {"dealpos": SECRET},
    "POSWEB_OAUTH_CLIENTS": {"dealpos": SECRET},
    "SECRET_KEY": SECRET,
}


def operations(document: Json) -> dict[str, Json]:
    """Every operation by its id, with its path and method."""
    return {
        operation["operationId"]: {**operation, "path": path, "method": method}
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


def resolve(document: Json, item: Json) -> Json:
    """A response or schema, following one ``$ref``."""
    ref = item.get("$ref")
    if ref is None:
        return item
    node: t.Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return t.cast(Json, node)


def answer_schema(document: Json, operation_id: str, status: int) -> OAS31Validator:
    """A validator of the JSON body an operation answers with ``status``."""
    response = resolve(document, operations(document)[operation_id]["responses"][str(status)])
    schema = response["content"]["application/json"]["schema"]
    return OAS31Validator({**schema, "components": document["components"]})


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=["posweb", *args])


@pytest.mark.parametrize(
    "config",
    [
        {},
        ALL_MODES,
        {"POSWEB_STRICT_PRESENCE": True, "POSWEB_INBOX": False},
        {"POSWEB_API_KEYS": [], "POSWEB_NO_AUTH": True},
    ],
    ids=["api-key", "every-mode", "strict-no-inbox", "no-auth"],
)
def test_the_document_is_valid_openapi_3_1(make_app: MakeApp, config: Json) -> None:
    if config.get("POSWEB_NO_AUTH"):
        with pytest.warns(InsecureWebhookWarning):
            app = make_app(**config)
    else:
        app = make_app(**config)
    document = openapi_document(app)
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert json.loads(openapi_json(app)) == document


def test_every_endpoint_is_described_where_the_app_mounts_it(posweb: PosWeb) -> None:
    app = Flask(__name__)
    app.config.update(TESTING=True, POSWEB_API_KEYS=[KEY], POSWEB_INBOX=False, **ALL_MODES)
    app.register_blueprint(posweb.blueprint, url_prefix="/shops/kopi/dealpos")
    found = operations(openapi_document(app))
    expected = [*EVENTS, "oauth_token", *(call.endpoint for call in CALLS.values())]
    assert sorted(found) == sorted(expected)
    with app.test_request_context():
        for name, operation in found.items():
            assert operation["path"] == url_for(f"posweb.{name}")
            assert operation["method"] == "post"
    assert found["payment_created"]["path"] == "/shops/kopi/dealpos/payment-created"
    assert found["payment_written_off"]["x-dealpos-event"] == "paymentWriteoff"
    assert found["bill_created"]["x-dealpos-provisional"] is True


def test_a_second_mount_is_described_too(make_app: MakeApp, posweb: PosWeb) -> None:
    app = make_app()
    app.register_blueprint(posweb.blueprint, url_prefix="/backup", name="posweb_backup")
    found = operations(openapi_document(app))
    assert found["payment_created"]["path"] == "/dealpos/payment-created"
    assert found["posweb_backup_payment_created"]["path"] == "/backup/payment-created"
    validate(openapi_document(app))


def test_the_token_url_is_described_only_when_oauth_is_on(make_app: MakeApp) -> None:
    document = openapi_document(make_app())
    assert "oauth_token" not in operations(document)
    assert "/dealpos/openapi.json" not in document["paths"]


def test_security_schemes_follow_the_configuration(make_app: MakeApp) -> None:
    app = make_app(POSWEB_API_KEY_HEADER="X-DealPOS-Key", **ALL_MODES)
    document = openapi_document(app, server_url="https://shop.example.com/")
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-DealPOS-Key"}
    assert schemes["basicAuth"] == {"type": "http", "scheme": "basic"}
    flow = schemes["oauth2"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "https://shop.example.com/dealpos/oauth/token"
    assert document["servers"] == [{"url": "https://shop.example.com"}]
    assert document["security"] == [{"apiKey": []}, {"basicAuth": []}, {"oauth2": []}]
    found = operations(document)
    assert found["oauth_token"]["security"] == [{"oauthClient": []}, {}]
    assert "401" in found["payment_created"]["responses"]
    assert SECRET not in json.dumps(document) and KEY not in json.dumps(document)


def test_one_mode_alone(make_app: MakeApp) -> None:
    document = openapi_document(make_app(POSWEB_API_KEYS=[], POSWEB_BASIC_AUTH={"u": SECRET}))
    assert list(document["components"]["securitySchemes"]) == ["basicAuth"]
    assert document["security"] == [{"basicAuth": []}]
    assert "servers" not in document


def test_without_credentials_there_is_no_security_and_no_401(make_app: MakeApp) -> None:
    with pytest.warns(InsecureWebhookWarning):
        app = make_app(POSWEB_API_KEYS=[], POSWEB_NO_AUTH=True)
    document = openapi_document(app)
    assert "security" not in document
    assert "securitySchemes" not in document["components"]
    assert "401" not in operations(document)["payment_created"]["responses"]


def test_presence_follows_the_setting(make_app: MakeApp) -> None:
    lenient = openapi_document(make_app())["components"]["schemas"]
    strict = openapi_document(make_app(POSWEB_STRICT_PRESENCE=True))["components"]["schemas"]
    assert "required" not in lenient["Customer"]
    assert lenient["Customer"]["x-dealpos-required"] == strict["Customer"]["required"]
    assert "Email" in strict["Customer"]["required"]
    assert lenient["Customer"]["properties"]["Email"]["x-dealpos-non-empty"] is True
    assert strict["Customer"]["properties"]["Email"]["minLength"] == 1
    # Invoice Payment's marks are exact: enforced either way.
    assert lenient["InvoicePayment"] == strict["InvoicePayment"]
    assert "Amount" in lenient["InvoicePayment"]["required"]


def test_answers_match_what_the_app_answers(make_app: MakeApp) -> None:
    app = make_app(**ALL_MODES)
    client = t.cast(PosWebClient, app.test_client())
    document = openapi_document(app)
    ok = client.deliver("payment_created", sample("payment_created"))
    assert ok.status_code == 200
    assert answer_schema(document, "payment_created", 200).is_valid(ok.get_json())
    refused = client.deliver("payment_created", {"Amount": "a lot"})
    assert refused.status_code == 422
    assert answer_schema(document, "payment_created", 422).is_valid(refused.get_json())
    assert not answer_schema(document, "payment_created", 422).is_valid({"status": "error"})
    for status, response in [
        (401, client.post("/dealpos/payment-created", json={})),
        (415, client.post("/dealpos/payment-created", data="{}", headers={"X-API-Key": KEY})),
        (400, client.post("/dealpos/payment-created", json=[], headers={"X-API-Key": KEY})),
        (431, client.post("/dealpos/payment-created", json={}, headers={"X-Pad": "x" * 40000})),
    ]:
        assert response.status_code == status
        assert answer_schema(document, "payment_created", status).is_valid(response.get_json())

    grant = {"grant_type": "client_credentials", "client_id": "dealpos"}
    for status, form in [
        (400, {"grant_type": "password"}),
        (401, {**grant, "client_secret": "wrong"}),
        (200, {**grant, "client_secret": SECRET}),
    ]:
        token = client.post("/dealpos/oauth/token", data=form)
        assert token.status_code == status
        assert answer_schema(document, "oauth_token", status).is_valid(token.get_json())


def test_a_throttled_token_url_answers_429_as_described(make_app: MakeApp) -> None:
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    app = make_app(POSWEB_TOKEN_RATE_LIMIT="1 per minute", **ALL_MODES)
    assert "429" not in operations(openapi_document(app))["oauth_token"]["responses"]
    Limiter(get_remote_address, app=app, storage_uri="memory://")
    document = openapi_document(app)
    assert "1 per minute" in operations(document)["oauth_token"]["responses"]["429"]["description"]
    client = app.test_client()
    form = {"grant_type": "client_credentials", "client_id": "dealpos", "client_secret": "guess"}
    statuses = [client.post("/dealpos/oauth/token", data=form) for _ in range(2)]
    assert [response.status_code for response in statuses] == [401, 429]
    assert answer_schema(document, "oauth_token", 429).is_valid(statuses[1].get_json())


def test_loyalty_answers_match_what_the_app_answers(make_app: MakeApp, posweb: PosWeb) -> None:
    app = make_app()
    before = operations(openapi_document(app))
    assert "501" in before["loyalty_validate_coupon"]["responses"]

    @posweb.loyalty.validate_coupon
    def refuse(call: LoyaltyCall) -> CouponRefused:
        return CouponRefused("Already used.")

    @posweb.loyalty.member_points
    def points(call: LoyaltyCall) -> int:
        return 1250

    document = openapi_document(app)
    assert "501" not in operations(document)["loyalty_validate_coupon"]["responses"]
    client = t.cast(PosWebClient, app.test_client())
    refused = client.call_loyalty("validate_coupon", sample("loyalty_validate_coupon"))
    assert refused.status_code == 400
    assert answer_schema(document, "loyalty_validate_coupon", 400).is_valid(refused.get_json())
    answered = client.call_loyalty("member_points", sample("loyalty_member_points"))
    assert answered.get_json() == {"Point": 1250}
    assert answer_schema(document, "loyalty_member_points", 200).is_valid(answered.get_json())
    assert not answer_schema(document, "loyalty_member_points", 200).is_valid({"Point": "x"})


def test_the_command_writes_the_document(make_app: MakeApp, tmp_path: pathlib.Path) -> None:
    app = make_app()
    target = tmp_path / "openapi.json"
    result = run(app, "openapi", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert json.loads(target.read_text()) == openapi_document(app)


def test_the_command_writes_to_standard_output(make_app: MakeApp) -> None:
    app = make_app(**ALL_MODES)
    result = run(app, "openapi", "--base-url", "https://shop.example.com")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document == openapi_document(app, server_url="https://shop.example.com")
    assert document["servers"] == [{"url": "https://shop.example.com"}]


def test_the_command_says_in_one_line_what_to_install(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()
    for name in [name for name in sys.modules if name.startswith("flask_posweb.openapi")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "apispec", None)  # as if it were not installed
    result = run(app, "openapi")
    assert result.exit_code == 1
    assert result.output == (
        "Error: This command needs apispec: pip install 'Flask-PosWeb[openapi]'.\n"
    )


def test_an_unwritable_output_is_one_line(make_app: MakeApp, tmp_path: pathlib.Path) -> None:
    result = run(make_app(), "openapi", "--output", str(tmp_path / "missing" / "openapi.json"))
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_served_document_is_off_by_default(client: PosWebClient) -> None:
    response = client.get("/dealpos/openapi.json")
    assert response.status_code == 404
    assert response.get_json()["status"] == "error"


def test_the_served_document_needs_no_credentials(make_app: MakeApp) -> None:
    app = make_app(POSWEB_OPENAPI=True, **ALL_MODES)
    client = app.test_client()
    response = client.get("/dealpos/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == openapi_document(app)
    # Nothing in it comes from the Host header a caller chose.
    other = client.get("/dealpos/openapi.json", headers={"Host": "evil.example"})
    assert other.data == response.data
    assert client.post("/dealpos/openapi.json").status_code == 405


def test_the_served_document_follows_the_script_root(make_app: MakeApp) -> None:
    app = make_app(POSWEB_OPENAPI=True, **ALL_MODES)
    response = app.test_client().get("/dealpos/openapi.json", base_url="https://localhost/shop/")
    document = response.get_json()
    assert document["servers"] == [{"url": "/shop"}]
    flow = document["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/shop/dealpos/oauth/token"


def test_serving_without_apispec_fails_at_setup(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        "importlib.util.find_spec",
        lambda name, *args: None if name == "apispec" else find_spec(name, *args),
    )
    with pytest.raises(ConfigurationError, match=r"pip install 'Flask-PosWeb\[openapi\]'"):
        make_app(POSWEB_OPENAPI=True)


def test_apispec_is_imported_only_when_a_document_is_wanted(tmp_path: pathlib.Path) -> None:
    script = f"""
import sys
from flask import Flask
from flask_posweb import PosWeb
from flask_posweb.testing import PosWebClient
from flask_posweb.sending import sample
app = Flask(__name__)
app.config.update(TESTING=True, POSWEB_API_KEYS=[{KEY!r}], POSWEB_INBOX=False)
PosWeb(app)
app.test_client_class = PosWebClient
assert app.test_client().deliver("payment_created", sample("payment_created")).status_code == 200
assert app.test_client().get("/dealpos/openapi.json").status_code == 404
assert app.test_cli_runner().invoke(args=["posweb", "--help"]).exit_code == 0
assert "apispec" not in sys.modules, "imported"
assert app.test_cli_runner().invoke(args=["posweb", "openapi"]).exit_code == 0
assert "apispec" in sys.modules
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
