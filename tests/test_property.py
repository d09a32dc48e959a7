"""Whatever arrives, authenticated, at any endpoint, however it arrives: a 200 or a
JSON 4xx (413 past the size limit), never a 5xx; and the way it arrives
(Content-Length or a stream the server ends) changes nothing."""

from __future__ import annotations

import io
import json
import typing as t
from collections.abc import Iterator

import pytest
from flask import Flask
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from flask_posweb import EVENTS
from flask_posweb import PosWeb
from flask_posweb.loyalty import CALLS
from flask_posweb.loyalty import Coupon
from flask_posweb.sending import sample
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient

from .conftest import KEY

ENDPOINTS = [*EVENTS, *(f"loyalty_{name}" for name in CALLS)]
LIMIT = 4096

json_scalars = (
    st.none()
    | st.booleans()
    | st.text(max_size=20)
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
#: Number literals an attacker would write: huge exponents, long digit runs.
huge_numbers = st.builds(
    lambda digits, sign, exponent: f"{digits}e{sign}{exponent}",
    st.integers(1, 10**40).map(str),
    st.sampled_from(["", "-", "+"]),
    st.integers(0, 10**9),
)


@st.composite
def mutated_samples(draw: st.DrawFn, endpoint: str) -> bytes:
    """The endpoint's sample with some fields dropped, replaced by anything, or by
    a huge number literal; maybe with invalid UTF-8 spliced into its text."""
    body = json.loads(sample(endpoint))
    numbers: dict[str, str] = {}
    for key in draw(st.lists(st.sampled_from(sorted(body)), max_size=4, unique=True)):
        action = draw(st.sampled_from(["drop", "replace", "huge"]))
        if action == "drop":
            del body[key]
        elif action == "replace":
            body[key] = draw(json_values)
        else:
            body[key] = f"@@{key}@@"
            numbers[f'"@@{key}@@"'] = draw(huge_numbers)
    raw = json.dumps(body, ensure_ascii=draw(st.booleans()))
    for marker, literal in numbers.items():
        raw = raw.replace(marker, literal)
    encoded = raw.encode("utf-8")
    if draw(st.integers(0, 4)) == 0:  # now and then, a byte that is not UTF-8
        at = draw(st.integers(0, len(encoded)))
        encoded = (
            encoded[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + encoded[at:]
        )
    return encoded


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    app = Flask(__name__, instance_path=str(tmp_path_factory.mktemp("instance")))
    app.config.update(TESTING=True, POSWEB_API_KEYS=[KEY], POSWEB_MAX_CONTENT_LENGTH=LIMIT)
    posweb = PosWeb()
    posweb.loyalty.member_points(lambda call: 1)
    posweb.loyalty.order_complete(lambda call: 2)
    posweb.loyalty.validate_coupon(lambda call: Coupon("value", 3))
    app.register_blueprint(posweb.blueprint, url_prefix="/dealpos")
    app.test_client_class = PosWebClient
    yield app
    get_state(app).close()


class Trickle(io.RawIOBase):
    """A request body arriving in small pieces, as a dechunking server hands it on."""

    def __init__(self, data: bytes, piece: int) -> None:
        self.data, self.piece = data, piece

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: t.Any) -> int:
        size = min(len(buffer), self.piece, len(self.data))
        buffer[:size], self.data = self.data[:size], self.data[size:]
        return size


def post(app: Flask, endpoint: str, body: bytes, piece: int | None = None) -> t.Any:
    """POST ``body``; with ``piece``, without Content-Length, in pieces (chunked)."""
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    path = (
        f"/dealpos/{endpoint.replace('_', '-')}"
        if endpoint in EVENTS
        else (f"/dealpos/loyalty/{endpoint.removeprefix('loyalty_').replace('_', '-')}")
    )
    headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
    if piece is None:
        return client.post(path, data=body, headers=headers)
    return client.post(
        path,
        headers={**headers, "Transfer-Encoding": "chunked"},
        environ_overrides={
            # No length: the server dechunks the stream and says where it ends.
            "wsgi.input": io.BufferedReader(Trickle(body, piece)),
            "wsgi.input_terminated": True,
            "CONTENT_LENGTH": "",
        },
    )


def check(response: t.Any, size: int) -> None:
    status = response.status_code
    assert status == 200 or 400 <= status < 500, status
    assert (status == 413) == (size > LIMIT)
    assert response.mimetype == "application/json"
    json.loads(response.get_data())


FAST = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@FAST
@given(raw=st.binary(max_size=300))
def test_random_bytes(app: Flask, endpoint: str, raw: bytes) -> None:
    check(post(app, endpoint, raw), len(raw))


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@FAST
@given(data=st.data())
def test_random_json(app: Flask, endpoint: str, data: st.DataObject) -> None:
    body = data.draw(
        json_values.map(lambda value: json.dumps(value).encode()) | mutated_samples(endpoint)
    )
    check(post(app, endpoint, body), len(body))


@pytest.mark.parametrize(
    "endpoint", ["payment_created", "invoice_created", "loyalty_member_points"]
)
@FAST
@given(data=st.data())
def test_chunked_bodies_answer_as_sized_ones(
    app: Flask, endpoint: str, data: st.DataObject
) -> None:
    """Hostile bytes, finding 1: past the limit, a chunked body is a 413 too, and
    nothing of it is stored."""
    body = data.draw(mutated_samples(endpoint) | st.binary(min_size=LIMIT - 10, max_size=3 * LIMIT))
    inbox = get_state(app).require_inbox()
    before = inbox.counts()
    chunked = post(app, endpoint, body, piece=data.draw(st.integers(1, 700)))
    check(chunked, len(body))
    if chunked.status_code == 413:
        assert inbox.counts() == before
    sized = post(app, endpoint, body)
    assert sized.status_code == chunked.status_code
