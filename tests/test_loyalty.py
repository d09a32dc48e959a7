"""DealPOS's loyalty calls: member points, order complete (idempotent), coupons."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import time
import typing as t
from decimal import Decimal

import pytest
from flask import Flask

from flask_posweb import PosWeb
from flask_posweb import signals
from flask_posweb.exceptions import ConfigurationError
from flask_posweb.loyalty import Coupon
from flask_posweb.loyalty import CouponRefused
from flask_posweb.loyalty import LoyaltyCall
from flask_posweb.sending import sample
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient
from flask_posweb.testing import captured_signals

from .conftest import MakeApp
from .conftest import run_together


def test_member_points(client: PosWebClient, posweb: PosWeb) -> None:
    calls: list[LoyaltyCall] = []

    @posweb.loyalty.member_points
    def points(call: LoyaltyCall) -> int:
        calls.append(call)
        return 1208

    response = client.call_loyalty("member_points")
    assert response.status_code == 200
    assert response.json == {"Point": 1208}
    assert calls[0].data["Phone"] == "081234567890" and calls[0].raw == sample(
        "loyalty_member_points"
    )


def test_phone_numbers_stay_strings_and_unknown_fields_are_kept(
    client: PosWebClient, posweb: PosWeb
) -> None:
    seen: list[dict[str, t.Any]] = []
    posweb.loyalty.member_points(lambda call: seen.append(call.data) or 0)
    body = {"Outlet": "Kemang", "Phone": 6281234567890, "Email": "", "Code": "", "Tier": "Gold"}
    assert client.call_loyalty("member_points", body).status_code == 200
    assert seen[0]["Phone"] == "6281234567890" and seen[0]["Tier"] == "Gold"


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (Decimal("12.50"), 12.5),
        (Decimal("1208"), 1208),
        (7.25, 7.25),
        ({"Point": 3}, 3),
    ],
)
def test_answers_are_json_numbers(
    client: PosWebClient, posweb: PosWeb, result: t.Any, expected: t.Any
) -> None:
    posweb.loyalty.member_points(lambda call: result)
    response = client.call_loyalty("member_points")
    assert response.status_code == 200
    assert response.json == {"Point": expected}
    assert isinstance(response.json["Point"], type(expected))


def test_invalid_requests_are_refused_like_webhooks(client: PosWebClient, posweb: PosWeb) -> None:
    posweb.loyalty.member_points(lambda call: 1)
    response = client.call_loyalty("member_points", {"Phone": "0812"})
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"Outlet", "Email", "Code"}
    assert client.call_loyalty("member_points", b"[]").status_code == 400
    unauthenticated = client.post("/dealpos/loyalty/member-points", json={})
    assert unauthenticated.status_code == 401


def test_a_call_cut_short_of_its_content_length_is_refused(
    client: PosWebClient, posweb: PosWeb
) -> None:
    """Hostile bytes round two, finding 1: the provider never sees a body the
    till did not finish sending, even one that parses."""
    asked: list[LoyaltyCall] = []
    posweb.loyalty.order_complete(lambda call: asked.append(call) or 1)
    whole = sample("loyalty_order_complete")
    response = client.post(
        "/dealpos/loyalty/order-complete",
        input_stream=io.BytesIO(whole),
        content_type="application/json",
        headers={"X-API-Key": "test-key-0123456789"},
        environ_overrides={"CONTENT_LENGTH": str(len(whole) + 1), "wsgi.input_terminated": True},
    )
    assert response.status_code == 400 and response.is_json
    assert f"after {len(whole)} of the {len(whole) + 1} bytes" in response.json["message"]
    assert asked == []


def test_a_call_with_too_many_headers_is_a_431(make_app: MakeApp, posweb: PosWeb) -> None:
    asked: list[LoyaltyCall] = []
    posweb.loyalty.member_points(lambda call: asked.append(call) or 1)
    app = make_app(POSWEB_MAX_HEADERS=10)
    response = app.test_client().post(
        "/dealpos/loyalty/member-points",
        data=sample("loyalty_member_points"),
        content_type="application/json",
        headers={"X-API-Key": "test-key-0123456789", **{f"X-{n}": "1" for n in range(10)}},
    )
    assert response.status_code == 431 and response.is_json
    assert "at most 10 are accepted" in response.json["message"]
    assert asked == []


@pytest.mark.parametrize("call", ["member_points", "order_complete", "validate_coupon"])
def test_no_provider_is_a_501_naming_the_decorator(client: PosWebClient, call: str) -> None:
    response = client.call_loyalty(call)
    assert response.status_code == 501
    assert f"@posweb.loyalty.{call}" in response.json["message"]


def test_exactly_one_provider_per_call(posweb: PosWeb) -> None:
    posweb.loyalty.order_complete(lambda call: 1)
    with pytest.raises(ConfigurationError, match="already has a provider"):
        posweb.loyalty.order_complete(lambda call: 2)


@pytest.mark.parametrize(
    "result",
    [
        "lots",
        None,
        True,
        {"Points": 3},
        {"Point": "many"},
        {"Point": 1, "extra": 2},
        float("nan"),
        [1],
    ],
)
def test_a_malformed_answer_is_a_500_never_sent_to_the_till(
    app: Flask,
    client: PosWebClient,
    posweb: PosWeb,
    result: t.Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    posweb.loyalty.member_points(lambda call: result)
    with captured_signals(app, signals.loyalty_failed) as failed:
        response = client.call_loyalty("member_points")
    assert response.status_code == 500
    assert response.json["status"] == "error" and "provider" in response.json["message"]
    assert "Point" not in response.json
    assert len(failed) == 1 and "not answered" in caplog.text


def test_a_provider_that_raises_is_a_500(
    app: Flask, client: PosWebClient, posweb: PosWeb, caplog: pytest.LogCaptureFixture
) -> None:
    @posweb.loyalty.member_points
    def broken(call: LoyaltyCall) -> int:
        raise LookupError("points service down")

    response = client.call_loyalty("member_points")
    assert response.status_code == 500
    assert "points service down" not in response.get_data(as_text=True)
    assert "points service down" in caplog.text  # with its traceback, in our logs


def test_coupon_accepted(client: PosWebClient, posweb: PosWeb) -> None:
    expires = dt.datetime(2027, 12, 31, 23, 59, 59)
    posweb.loyalty.validate_coupon(
        lambda call: Coupon("percentageDiscount", 10, expires_at=expires)
    )
    response = client.call_loyalty("validate_coupon")
    assert response.status_code == 200
    assert response.json == {
        "Type": "percentageDiscount",
        "Amount": 10,
        "status": "activated",
        "expiredAt": "2027-12-31T23:59:59",
    }


def test_coupon_refused_is_a_400(client: PosWebClient, posweb: PosWeb) -> None:
    seen: list[str] = []

    @posweb.loyalty.validate_coupon
    def refuse(call: LoyaltyCall) -> CouponRefused:
        seen.append(call.data["Customer"]["Email"])
        return CouponRefused("This coupon has been used already.")

    response = client.call_loyalty("validate_coupon")
    assert response.status_code == 400
    assert response.json == {
        "status": "used",
        "expiredAt": None,
        "Message": "This coupon has been used already.",
    }
    assert seen == ["sari@example.com"]


@pytest.mark.parametrize(
    "result",
    [
        Coupon("bogus", 10),  # type: ignore[arg-type]
        CouponRefused(""),
        CouponRefused("x", status="activated"),
        {"Type": "value", "Amount": 5},
    ],
)
def test_invalid_coupon_answers_are_500(
    client: PosWebClient, posweb: PosWeb, result: t.Any
) -> None:
    posweb.loyalty.validate_coupon(lambda call: result)
    assert client.call_loyalty("validate_coupon").status_code == 500


def test_coupon_without_a_key_is_refused(client: PosWebClient, posweb: PosWeb) -> None:
    posweb.loyalty.validate_coupon(lambda call: Coupon("value", 1))
    response = client.call_loyalty("validate_coupon", {"Key": "", "Outlet": "Kemang"})
    assert response.status_code == 422 and response.json["errors"] == {
        "Key": ["Must not be empty."]
    }


# -- order complete: once per order ---------------------------------------------------


class Counter:
    def __init__(self, reward: t.Any = 68, delay: float = 0, failures: int = 0) -> None:
        self.reward, self.delay, self.failures, self.calls = reward, delay, failures, 0

    def __call__(self, call: LoyaltyCall) -> t.Any:
        self.calls += 1
        time.sleep(self.delay)
        if self.calls <= self.failures:
            raise RuntimeError("rewards service down")
        return self.reward


def test_order_complete_is_computed_once_per_order(
    app: Flask, client: PosWebClient, posweb: PosWeb
) -> None:
    provider = Counter()
    posweb.loyalty.order_complete(provider)
    with captured_signals(app, signals.loyalty_answered) as answered:
        first = client.call_loyalty("order_complete")
        again = client.call_loyalty("order_complete")  # DealPOS's retry
    assert first.json == again.json == {"reward": 68}
    assert provider.calls == 1
    assert [kwargs["replayed"] for _, kwargs in answered] == [False, True]
    memory = get_state(app).require_inbox().answers
    assert memory is not None
    (row,) = memory.recent()
    assert row.call == "order_complete" and row.answer == {"reward": 68}
    assert (
        row.status == "answered"
        and row.key == "id:" + json.loads(sample("loyalty_order_complete"))["ID"]
    )


def test_remembered_answers_are_not_deliveries(
    app: Flask, client: PosWebClient, posweb: PosWeb
) -> None:
    """Inbox 0.2, finding 6: 0.1 kept them among the deliveries, and
    ``flask posweb replay --failed`` broke them (503 forever)."""
    provider = Counter(failures=1)
    posweb.loyalty.order_complete(provider)
    assert client.call_loyalty("order_complete").status_code == 500  # remembered as failed
    inbox = get_state(app).require_inbox()
    assert inbox.deliveries() == [] and sum(inbox.counts().values()) == 0
    runner = app.test_cli_runner()
    assert runner.invoke(args=["posweb", "replay", "--failed"]).exit_code == 0
    assert runner.invoke(args=["posweb", "replay", "--rejected"]).exit_code == 0
    assert runner.invoke(args=["posweb", "prune", "--older-than", "0s"]).exit_code == 0
    answered = client.call_loyalty("order_complete")
    assert answered.status_code == 200 and answered.json == {"reward": 68}
    runner.invoke(args=["posweb", "replay", "--status", "processed"])
    again = client.call_loyalty("order_complete")
    assert again.json == {"reward": 68} and provider.calls == 2


def test_an_order_id_too_long_to_be_a_key_is_refused(
    app: Flask, client: PosWebClient, posweb: PosWeb
) -> None:
    """Inbox 0.2, finding 7: a 10,000-character ID failed a whole group commit."""
    posweb.loyalty.order_complete(Counter())
    body = json.loads(sample("loyalty_order_complete"))
    response = client.call_loyalty("order_complete", {**body, "ID": "x" * 10_000})
    assert response.status_code == 422
    assert list(response.json["errors"]) == ["ID"]
    fine = client.call_loyalty("order_complete", {**body, "ID": "x" * 200})
    assert fine.status_code == 200


def test_the_order_id_is_the_key_not_the_bytes(client: PosWebClient, posweb: PosWeb) -> None:
    provider = Counter()
    posweb.loyalty.order_complete(provider)
    body = json.loads(sample("loyalty_order_complete"))
    client.call_loyalty("order_complete", body)
    again = client.call_loyalty("order_complete", {**body, "Note": "resent with another field"})
    other = client.call_loyalty("order_complete", {**body, "ID": "another-order"})
    assert again.json == other.json == {"reward": 68}
    assert provider.calls == 2


def test_concurrent_repeats_ask_the_provider_once(app: Flask, posweb: PosWeb) -> None:
    provider = Counter(delay=0.3)
    posweb.loyalty.order_complete(provider)
    answers: list[t.Any] = []

    def call() -> None:
        client: PosWebClient = app.test_client()  # type: ignore[assignment]
        answers.append(client.call_loyalty("order_complete").json)

    run_together(call, 3)
    assert answers == [{"reward": 68}] * 3
    assert provider.calls == 1


def test_remembered_answers_are_kept_for_their_own_retention(
    make_app: MakeApp, posweb: PosWeb
) -> None:
    app = make_app(POSWEB_LOYALTY_RETENTION="1d")
    posweb.loyalty.order_complete(Counter())
    PosWebClient(app).call_loyalty("order_complete")
    memory = get_state(app).require_inbox().answers
    assert memory is not None and memory.housekeep(86400) == 0
    assert memory.housekeep(0) == 1 and memory.recent() == []


def test_a_failed_order_is_asked_again(client: PosWebClient, posweb: PosWeb) -> None:
    provider = Counter(failures=1)
    posweb.loyalty.order_complete(provider)
    assert client.call_loyalty("order_complete").status_code == 500
    retried = client.call_loyalty("order_complete")
    assert retried.status_code == 200 and retried.json == {"reward": 68}
    assert provider.calls == 2


def test_a_slow_provider_is_a_503_and_its_late_answer_is_remembered(
    make_app: MakeApp, posweb: PosWeb, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "flask_posweb")
    app = make_app(POSWEB_LOYALTY_TIME_BUDGET=0.2)
    provider = Counter(delay=0.5)
    posweb.loyalty.order_complete(provider)
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    with captured_signals(app, signals.loyalty_failed) as failed:
        slow = client.call_loyalty("order_complete")
    assert slow.status_code == 503 and slow.headers["Retry-After"]
    assert "longer than 0.2 s" in slow.json["message"] and len(failed) == 1
    time.sleep(0.5)  # DealPOS retries 7 s later; the provider has finished by then
    retried = client.call_loyalty("order_complete")
    assert retried.status_code == 200 and retried.json == {"reward": 68}
    assert provider.calls == 1
    assert "late answer remembered" in caplog.text


def test_a_slow_points_lookup_is_a_503(make_app: MakeApp, posweb: PosWeb) -> None:
    app = make_app(POSWEB_LOYALTY_TIME_BUDGET=0.1)
    posweb.loyalty.member_points(Counter(delay=0.3))
    response = app.test_client().call_loyalty("member_points")  # type: ignore[attr-defined]
    assert response.status_code == 503


def test_without_an_inbox_order_complete_is_not_remembered(
    make_app: MakeApp, posweb: PosWeb
) -> None:
    app = make_app(POSWEB_INBOX=False)
    provider = Counter()
    posweb.loyalty.order_complete(provider)
    client: PosWebClient = app.test_client()  # type: ignore[assignment]
    client.call_loyalty("order_complete")
    client.call_loyalty("order_complete")
    assert provider.calls == 2


def test_each_call_is_signalled(app: Flask, client: PosWebClient, posweb: PosWeb) -> None:
    posweb.loyalty.member_points(lambda call: 5)
    with captured_signals(app, signals.loyalty_requested, signals.loyalty_answered) as sent:
        client.call_loyalty("member_points")
    (_, requested), (_, answered) = sent
    assert requested["call"].name == "member_points"
    assert answered["status"] == 200 and answered["answer"] == {"Point": 5}
