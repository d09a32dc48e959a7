"""What each endpoint answers, and who may call it: operations, responses, security.

Errors follow :mod:`flask_posweb.exceptions` and the views: ``{"status":
"error", "message"}``, with ``errors`` on a 422; the token URL answers in
RFC 6749's shape. Only answers an endpoint can give are listed on it: no 401
without credentials configured, no 501 for a loyalty call that has a provider.

.. versionadded:: 0.2
"""

from __future__ import annotations

import typing as t

from ..calls import LoyaltyCallType
from ..events import EventType
from ..state import PosWebState
from ..web.throttle import token_throttle
from .schemas import SCHEMAS
from .schemas import Json
from .schemas import SchemaClass

__all__ = [
    "error_schemas",
    "event_operation",
    "loyalty_operation",
    "shared_responses",
    "security",
    "token_operation",
]

RESPONSES = "#/components/responses/"
ENFORCED = "Fields DealPOS marks required must be present."


def _ref(name: str) -> Json:
    return {"$ref": RESPONSES + name}


def _json(schema: t.Any) -> Json:
    return {"application/json": {"schema": schema}}


def error_schemas() -> dict[str, Json]:
    text = {"type": "string"}
    return {
        "Success": {
            "type": "object",
            "properties": {"status": {"const": "success"}},
            "required": ["status"],
            "description": "DealPOS's expected answer.",
        },
        "Error": {
            "type": "object",
            "properties": {
                "status": {"const": "error"},
                "message": {**text, "description": "One sentence, safe to show the sender."},
                "errors": {"$ref": SCHEMAS + "FieldErrors"},
            },
            "required": ["status", "message"],
        },
        "ValidationError": {
            "allOf": [{"$ref": SCHEMAS + "Error"}],
            "required": ["errors"],
            "description": "The body does not match the schema: the messages per field.",
        },
        "FieldErrors": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": text},
            "description": (
                "Messages by field path in DealPOS's names (`Customer.Email`, "
                "`Variants.0.Code`); `_schema` for the body as a whole."
            ),
        },
        "TokenRequest": {
            "type": "object",
            "properties": {
                "grant_type": {"const": "client_credentials"},
                "client_id": text,
                "client_secret": text,
            },
            "required": ["grant_type"],
            "description": (
                "RFC 6749 section 4.4; the client id and secret here, or in HTTP Basic, never both."
            ),
        },
        "Token": {
            "type": "object",
            "properties": {
                "access_token": text,
                "token_type": {"const": "Bearer"},
                "expires_in": {"type": "integer", "description": "Seconds."},
            },
            "required": ["access_token", "token_type", "expires_in"],
        },
        "OAuthError": {
            "type": "object",
            "properties": {
                "error": {"enum": ["invalid_request", "invalid_client", "unsupported_grant_type"]},
                "error_description": text,
            },
            "required": ["error", "error_description"],
            "description": "RFC 6749 section 5.2.",
        },
    }


def _header(description: str, schema: Json | None = None) -> Json:
    return {"description": description, "schema": schema or {"type": "string"}}


def shared_responses(state: PosWebState) -> dict[str, Json]:
    """Every answer of the webhook and loyalty URLs, as reusable responses."""
    settings = state.settings
    kept = (
        {"X-PosWeb-Delivery": _header("Id of the delivery in the inbox.", {"type": "integer"})}
        if settings.inbox
        else {}
    )
    error = _json({"$ref": SCHEMAS + "Error"})

    def answer(description: str, headers: Json | None = None, content: Json = error) -> Json:
        return {"description": description, "content": content, "headers": headers or {}}

    retry = {"Retry-After": _header("Seconds to wait.", {"type": "integer"})}
    return {
        "Success": answer(
            "Received: stored before this answer when the inbox is on; also a duplicate.",
            kept,
            _json({"$ref": SCHEMAS + "Success"}),
        ),
        "BadRequest": answer(
            "The body is not UTF-8 text, not JSON, or not a JSON object (kept as rejected); "
            "or it ended before its Content-Length (not kept).",
            kept,
        ),
        "Unauthorized": answer(
            "Missing or invalid credentials; the message never says which check failed.",
            {"WWW-Authenticate": _header("One challenge per configured mode.")},
        ),
        "NotFound": answer("No endpoint at this path under the prefix."),
        "MethodNotAllowed": answer(
            "The endpoint takes another method.", {"Allow": _header("The methods it takes.")}
        ),
        "HeadersTooLarge": answer(
            f"More than {settings.max_headers} request headers, or more than "
            f"{settings.max_header_bytes} bytes of them (`POSWEB_MAX_HEADERS`, "
            "`POSWEB_MAX_HEADER_BYTES`); refused before the credentials are checked."
        ),
        "PayloadTooLarge": answer(
            f"The body is larger than {settings.max_content_length} bytes "
            "(`POSWEB_MAX_CONTENT_LENGTH`); refused before it is read."
        ),
        "UnsupportedMediaType": answer(
            "The body is not declared `application/json`, or is compressed.", kept
        ),
        "ValidationFailed": answer(
            "The body does not match the schema.",
            kept,
            _json({"$ref": SCHEMAS + "ValidationError"}),
        ),
        "InternalError": answer(
            "Internal error"
            + (
                "."
                if settings.inbox
                else "; or a receiver failed (no inbox: DealPOS retries once)."
            )
        ),
        "NoProvider": answer("The app has no provider for this loyalty call."),
        "Unavailable": answer(
            "The inbox could not commit in time, or a loyalty provider overran its "
            "budget: DealPOS retries.",
            retry,
        ),
    }


def _common(state: PosWebState) -> dict[str, Json]:
    """The answers any authenticated ``POST`` may get."""
    answers = {
        "400": _ref("BadRequest"),
        "401": _ref("Unauthorized"),
        "413": _ref("PayloadTooLarge"),
        "415": _ref("UnsupportedMediaType"),
        "422": _ref("ValidationFailed"),
        "431": _ref("HeadersTooLarge"),
        "500": _ref("InternalError"),
        "503": _ref("Unavailable"),
    }
    if state.authenticator is None:
        del answers["401"]
    return answers


def _request(schema: t.Any, description: str) -> Json:
    return {"required": True, "description": description, "content": _json(schema)}


def event_operation(
    event: EventType, schema: SchemaClass, enforced: bool, state: PosWebState
) -> Json:
    presence = (
        ENFORCED
        if enforced
        else "A body lacking fields DealPOS marks required (`x-dealpos-required`) is accepted; "
        "handlers see them in `event.missing` (`POSWEB_STRICT_PRESENCE` refuses it)."
    )
    description = f"{event.description} Unknown fields are kept."
    if event.provisional:
        description += " Provisional: DealPOS has not published this body."
    operation: Json = {
        "summary": event.title,
        "description": description,
        "tags": [event.group],
        "requestBody": _request(schema, presence),
        "responses": {"200": _ref("Success"), **_common(state)},
    }
    if event.wire_name:
        operation["x-dealpos-event"] = event.wire_name
    if event.provisional:
        operation["x-dealpos-provisional"] = True
    return operation


def loyalty_operation(call: LoyaltyCallType, state: PosWebState) -> Json:
    """``POST <prefix>/loyalty/<call>``: DealPOS asks, and uses the answer."""
    error = _json({"$ref": SCHEMAS + "Error"})
    answers: Json = {
        "200": {
            "description": "The provider's answer.",
            "content": _json(call.answer_schemas[200]),
        },
        **_common(state),
        "500": {
            "description": "The provider failed, or answered what DealPOS cannot use.",
            "content": error,
        },
    }
    refusal = call.answer_schemas.get(400)
    if refusal is not None:
        answers["400"] = {
            "description": "The coupon cannot be used; or the body is not a JSON object.",
            "content": _json({"anyOf": [refusal, {"$ref": SCHEMAS + "Error"}]}),
        }
    if call.name not in state.providers:
        answers["501"] = _ref("NoProvider")
    return {
        "summary": call.title,
        "description": "DealPOS's External Loyalty App call: it uses the answer.",
        "tags": ["Loyalty Point"],
        "requestBody": _request(call.request_schema, ENFORCED),
        "responses": dict(sorted(answers.items())),
    }


def token_operation(state: PosWebState) -> Json:
    """``POST <prefix>/oauth/token``: OAuth 2.0 client credentials (RFC 6749 section 4.4)."""
    oauth = _json({"$ref": SCHEMAS + "OAuthError"})
    answers: Json = {
        "200": {
            "description": "A bearer token.",
            "content": _json({"$ref": SCHEMAS + "Token"}),
            "headers": {"Cache-Control": _header("`no-store`.")},
        },
        "400": {"description": "Not a client credentials request.", "content": oauth},
        "401": {
            "description": "Unknown client or wrong secret.",
            "content": oauth,
            "headers": {"WWW-Authenticate": _header("`Basic` when Basic was sent.")},
        },
        "413": {
            "description": "Too long for a token request.",
            "content": _json({"$ref": SCHEMAS + "Error"}),
        },
        "500": _ref("InternalError"),
    }
    if token_throttle(state) is not None:
        limit = state.settings.token_rate_limit
        answers["429"] = {
            "description": f"Too many failed requests from this address ({limit}).",
            "content": oauth,
            "headers": {"Retry-After": _header("Seconds to wait.", {"type": "integer"})},
        }
    token_request = {"schema": {"$ref": SCHEMAS + "TokenRequest"}}
    return {
        "summary": "OAuth 2.0 token (client credentials)",
        "description": "DealPOS's `ServerAuthenticationURL`: it gets a token here, then sends "
        "it with each webhook.",
        "tags": ["OAuth"],
        # The client's id and secret in HTTP Basic, or in the body (no scheme).
        "security": [{"oauthClient": []}, {}],
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": token_request,
                "application/json": token_request,
            },
        },
        "responses": dict(sorted(answers.items())),
    }


def security(state: PosWebState, token_url: str | None) -> tuple[dict[str, Json], list[Json]]:
    """The security schemes of the configured modes, and the webhooks' requirement
    (any one of them)."""
    schemes: dict[str, Json] = {}
    modes = state.authenticator.modes if state.authenticator is not None else ()
    for mode in modes:
        if mode == "api_key":
            header = state.settings.api_key_header
            schemes["apiKey"] = {"type": "apiKey", "in": "header", "name": header}
        elif mode == "basic":
            schemes["basicAuth"] = {"type": "http", "scheme": "basic"}
        elif mode == "bearer" and token_url is not None:
            flow = {"tokenUrl": token_url, "scopes": {}}
            schemes["oauth2"] = {"type": "oauth2", "flows": {"clientCredentials": flow}}
    requirement: list[Json] = [{name: []} for name in schemes]
    if state.tokens is not None:
        schemes["oauthClient"] = {
            "type": "http",
            "scheme": "basic",
            "description": "An OAuth client's id and secret, at the token URL only.",
        }
    return schemes, requirement
