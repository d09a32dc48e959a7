"""The catalogue is complete and consistent: with DealPOS's documentation (a copy
of the project's ``catalog.json`` in ``tests/data``), and with every place an
event must appear: schema, signal, URL rule, sample (the docs' events table is
checked in ``test_docs.py``)."""

from __future__ import annotations

import json
import pathlib
import re
import typing as t

import marshmallow as ma
import pytest
from flask import Flask
from marshmallow import fields

from flask_posweb import EVENTS
from flask_posweb import signals
from flask_posweb.events import EventType
from flask_posweb.events import kebab
from flask_posweb.loyalty import CALLS
from flask_posweb.schemas.base import NON_EMPTY
from flask_posweb.schemas.fields import DateOrDateTime
from flask_posweb.sending import sample

HERE = pathlib.Path(__file__).parent
VENDOR = json.loads((HERE / "data" / "dealpos_catalog.json").read_text())

#: Vendor events known by title only (no key published), mapped to our names.
BY_TITLE = {
    "Close Shift": "shift_closed",
    "Outbound Logistic Complete": "outbound_logistic_completed",
    "Inbound Logistic Complete": "inbound_logistic_completed",
}
#: Loyalty Point calls (request/response), mapped to our loyalty calls.
LOYALTY_BY_TITLE = {
    "Fetch Loyalty Points": "member_points",
    "Loyalty Point On Order Complete": "order_complete",
    "(validate promotion coupon; title not seen)": "validate_coupon",
}
#: Vendor entries we cannot ship: nothing but a truncated title is known.
UNREADABLE = {"Invoice Re… (truncated in source)"}
#: Groups the product brief lists; those without a documented event get provisional ones.
PRODUCT_GROUPS = [
    "Product",
    "Invoice",
    "Customer",
    "Supplier",
    "Bill",
    "Transfer Order",
    "Outbound Logistic",
    "Inbound Logistic",
    "Adjustment",
    "Invoice Payment",
    "Bill Payment",
    "Shift",
    "Outlet",
    "Invoice Write Off",
    "Supplier Bill Write Off",
    "Sales Order",
]
#: The product specifies Invoice Payment exactly: these fields required (strings non-empty).
PAYMENT_REQUIRED = {
    "ID",
    "InvoiceID",
    "Outlet",
    "Number",
    "Amount",
    "Method",
    "Date",
    "Created",
    "Creator",
}


def vendor_events() -> t.Iterator[tuple[str, dict[str, t.Any]]]:
    for group in VENDOR["groups"]:
        for event in group.get("events", []):
            yield group["tag"], event


def our_event(vendor_event: dict[str, t.Any]) -> EventType:
    if vendor_event["key"]:
        matches = [e for e in EVENTS.values() if e.wire_name == vendor_event["key"]]
        assert len(matches) == 1, vendor_event["key"]
        return matches[0]
    return EVENTS[BY_TITLE[vendor_event["title"]]]


PAYMENT_CREATED_NON_EMPTY = {
    f["name"]: f["non_empty"] is True
    for _, e in vendor_events()
    if e["key"] == "paymentCreated"
    for f in e["request_body"]["fields"]
}

WEBHOOKS = [
    (group, event)
    for group, event in vendor_events()
    if not group.startswith("Loyalty") and event["title"] not in UNREADABLE
]


@pytest.mark.parametrize(("group", "vendor"), WEBHOOKS, ids=[e["title"] for _, e in WEBHOOKS])
def test_every_documented_event_is_in_the_catalogue(group: str, vendor: dict[str, t.Any]) -> None:
    event = our_event(vendor)
    assert event.group == group
    assert event.title.startswith(vendor["title"].split(" (")[0])


def test_every_loyalty_call_is_served() -> None:
    calls = [e for g, e in vendor_events() if g.startswith("Loyalty Point")]
    assert sorted(LOYALTY_BY_TITLE[e["title"]] for e in calls) == sorted(CALLS)


def test_only_unreadable_entries_are_left_out() -> None:
    shipped = {id(v) for _, v in WEBHOOKS}
    left_out = [
        v["title"]
        for g, v in vendor_events()
        if id(v) not in shipped and not g.startswith("Loyalty")
    ]
    assert left_out == sorted(UNREADABLE)


@pytest.mark.parametrize("group", PRODUCT_GROUPS)
def test_every_product_group_has_events(group: str) -> None:
    events = [e for e in EVENTS.values() if e.group == group]
    assert events
    documented = any(v["tag"] == group and v.get("events") for v in VENDOR["groups"])
    # A group DealPOS documents no event for is served by provisional events.
    assert documented or all(e.provisional for e in events)


def test_groups_are_only_the_products() -> None:
    assert {e.group for e in EVENTS.values()} == set(PRODUCT_GROUPS)


@pytest.mark.parametrize("event", EVENTS.values(), ids=list(EVENTS))
def test_names_urls_and_signals_derive_from_one_name(event: EventType) -> None:
    assert re.fullmatch(
        r"[a-z]+(_[a-z]+)*_(created|updated|deleted|erased|written_off|"
        r"completed|closed)",
        event.name,
    )
    assert event.url_rule == "/" + kebab(event.name) == "/" + event.name.replace("_", "-")
    assert event.signal.name == event.name  # the signal's name is the event's name
    assert getattr(signals, event.name) is event.signal
    assert issubclass(event.schema, ma.Schema)


@pytest.mark.parametrize("event", EVENTS.values(), ids=list(EVENTS))
def test_marks_are_exact_only_for_invoice_payment(event: EventType) -> None:
    # The product specifies Invoice Payment exactly; elsewhere DealPOS itself
    # omits fields its pages mark required (NOTES.md).
    assert event.exact_marks == (event.group == "Invoice Payment")


@pytest.mark.parametrize("event", EVENTS.values(), ids=list(EVENTS))
def test_a_resource_key_is_a_declared_text_field(event: EventType) -> None:
    if event.resource_key is None:
        # Only bodies nobody has published, or without any id, go without one.
        assert event.provisional or event.group in {"Bill", "Outlet"}
        return
    field = declared(event.schema)[event.resource_key]
    assert isinstance(field, fields.String)


def test_the_four_invoice_payment_events_share_payment_createds_spec() -> None:
    created = EVENTS["payment_created"].schema
    for name in ("payment_updated", "payment_deleted", "payment_written_off"):
        schema = EVENTS[name].schema
        assert issubclass(schema, created)
        for field_name, field in declared(created).items():
            theirs = declared(schema)[field_name]
            assert (theirs.required, theirs.allow_none) == (field.required, field.allow_none)


def test_signals_module_has_no_stray_event_signals() -> None:
    declared = {
        n for n, v in vars(signals).items() if isinstance(v, type(signals.webhook_received))
    }
    lifecycle = {n for n in declared if n.startswith(("webhook_", "receiver_", "loyalty_"))}
    assert declared - lifecycle == set(EVENTS)


@pytest.mark.parametrize("event", EVENTS.values(), ids=list(EVENTS))
def test_every_event_has_a_sample_that_validates(event: EventType) -> None:
    data, missing = event.load(json.loads(sample(event.name)), strict=True)
    assert data and missing == ()


@pytest.mark.parametrize("event", EVENTS.values(), ids=list(EVENTS))
def test_every_event_is_routed(event: EventType) -> None:
    from flask_posweb import PosWeb

    app = Flask(__name__)
    app.config.update(TESTING=True, POSWEB_API_KEYS=["k" * 16])
    app.register_blueprint(PosWeb().blueprint, url_prefix="/dealpos")
    rules = {r.endpoint: r for r in app.url_map.iter_rules()}
    rule = rules[f"posweb.{event.name}"]
    assert rule.rule == "/dealpos" + event.url_rule
    assert rule.methods == {"POST"}  # what it serves, nothing else


# -- fields: our schemas say what DealPOS's documentation says -----------------------


def declared(schema: type[ma.Schema]) -> dict[str, fields.Field[t.Any]]:
    return dict(schema._declared_fields)


def nested_schema(field: fields.Field[t.Any]) -> type[ma.Schema] | None:
    inner = field.inner if isinstance(field, fields.List) else field
    if isinstance(inner, fields.Nested):
        return t.cast(type[ma.Schema], inner.nested)
    return None


def kind_matches(vendor_type: str, field: fields.Field[t.Any]) -> bool:
    kinds: dict[str, tuple[type, ...]] = {
        "string": (fields.String, DateOrDateTime),
        "number": (fields.Number,),
        "integer": (fields.Number,),  # money as Decimal, counts as Integer
        "boolean": (fields.Boolean,),
        "array": (fields.List,),
        "object": (fields.Nested, fields.Dict),
    }
    return isinstance(field, kinds[vendor_type])


def compare(
    vendor_fields: list[dict[str, t.Any]], schema: type[ma.Schema], path: str, payment: bool
) -> list[str]:
    problems = []
    ours = declared(schema)
    for vendor in vendor_fields:
        name, where = vendor["name"], f"{path}{vendor['name']}"
        field = ours.get(name)
        if field is None:
            problems.append(f"{where}: not declared")
            continue
        if not kind_matches(vendor["type"], field):
            problems.append(f"{where}: {vendor['type']} declared as {type(field).__name__}")
        required = name in PAYMENT_REQUIRED if payment else vendor["required"] is True
        if field.required != required:
            problems.append(f"{where}: required={field.required}, documented {required}")
        if payment and name not in PAYMENT_REQUIRED:  # as documented on Payment Created
            non_empty = PAYMENT_CREATED_NON_EMPTY.get(name, False)
        else:
            non_empty = (
                required and vendor["type"] == "string" if payment else vendor["non_empty"] is True
            )
        if vendor["type"] in ("string", "array"):
            if isinstance(field, DateOrDateTime):
                has = field.non_empty
            else:
                has = NON_EMPTY in field.validators
            if has != non_empty:
                problems.append(f"{where}: non-empty={has}, documented {non_empty}")
        sub = vendor.get("fields") or (vendor.get("items") or {}).get("fields")
        inner = nested_schema(field)
        if sub and inner is None:
            problems.append(f"{where}: documented fields not validated")
        elif sub and inner is not None:
            problems.extend(compare(sub, inner, f"{where}.", payment))
    return problems


DOCUMENTED = [(g, e) for g, e in WEBHOOKS if (e["request_body"] or {}).get("fields")]


@pytest.mark.parametrize(("group", "vendor"), DOCUMENTED, ids=[e["title"] for _, e in DOCUMENTED])
def test_schema_fields_match_the_documentation(group: str, vendor: dict[str, t.Any]) -> None:
    event = our_event(vendor)
    payment = group == "Invoice Payment"
    assert compare(vendor["request_body"]["fields"], event.schema, "", payment) == []


def test_dates_are_parsed_where_documented_as_dates() -> None:
    date_fields = {
        "Date",
        "DueDate",
        "Created",
        "Open",
        "Close",
        "Start",
        "End",
        "Modified",
        "ReceivedDate",
        "Birthdate",
    }
    for event in EVENTS.values():
        for name, field in declared(event.schema).items():
            if name in date_fields:
                assert isinstance(field, DateOrDateTime), f"{event.name}.{name}"
