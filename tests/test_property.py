"""Whatever arrives, authenticated, at any endpoint: a 200 or a JSON 4xx, never a 5xx."""

from __future__ import annotations

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

ENDPOINTS = [*EVENTS, *(f"loyalty_{name}" for name in CALLS)]

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


@st.composite
def mutated_samples(draw: st.DrawFn, endpoint: str) -> t.Any:
    """The endpoint's sample with some fields dropped or replaced by anything."""
    body = json.loads(sample(endpoint))
    for key in draw(st.lists(st.sampled_from(sorted(body)), max_size=4, unique=True)):
        if draw(st.booleans()):
            del body[key]
        else:
            body[key] = draw(json_values)
    return body


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    app = Flask(__name__, instance_path=str(tmp_path_factory.mktemp("instance")))
    app.config.update(TESTING=True, POSWEB_API_KEYS=["k"])
    posweb = PosWeb()
    posweb.loyalty.member_points(lambda call: 1)
    posweb.loyalty.order_complete(lambda call: 2)
    posweb.loyalty.validate_coupon(lambda call: Coupon("value", 3))
    app.register_blueprint(posweb.blueprint, url_prefix="/dealpos")
    app.test_client_class = PosWebClient
    yield app
    get_state(app).close()


def post(app: Flask, endpoint: str, body: bytes) -> t.Any:
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    if endpoint in EVENTS:
        return client.deliver(endpoint, body)
    return client.call_loyalty(endpoint.removeprefix("loyalty_"), body)


def check(response: t.Any) -> None:
    assert response.status_code == 200 or 400 <= response.status_code < 500, response.status_code
    assert response.mimetype == "application/json"
    json.loads(response.get_data())


FAST = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@FAST
@given(raw=st.binary(max_size=300))
def test_random_bytes(app: Flask, endpoint: str, raw: bytes) -> None:
    check(post(app, endpoint, raw))


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@FAST
@given(data=st.data())
def test_random_json(app: Flask, endpoint: str, data: st.DataObject) -> None:
    body = data.draw(json_values | mutated_samples(endpoint))
    check(post(app, endpoint, json.dumps(body).encode()))
