"""One source of truth, tested both ways: a body the library accepts is valid for its
operation's request schema in the OpenAPI document, and a body it refuses is not.

Bodies are judged the way each side reads them: the library from the raw bytes
(numbers as decimals), the document with a 3.1 JSON Schema validator on
``json.loads`` (numbers as floats), as an integrator's tools would. Differences
left on purpose (see docs/openapi.rst), kept out of the generated values: the
library also takes money and counts written as numeric strings, and numbers of
1e198 or more as the order ID; JSON Schema cannot bound significant digits.
"""

from __future__ import annotations

import decimal
import itertools
import json
import re
import typing as t
from collections.abc import Callable

import marshmallow as ma
import pytest
from flask import Flask
from hypothesis import given
from hypothesis import note
from hypothesis import settings
from hypothesis import strategies as st
from marshmallow import fields
from openapi_schema_validator import OAS31Validator

from flask_posweb import EVENTS
from flask_posweb import PosWeb
from flask_posweb.exceptions import ValidationFailedError
from flask_posweb.loyalty import CALLS
from flask_posweb.openapi import openapi_document
from flask_posweb.openapi.schemas import BLANK_OR_DATE_PATTERN
from flask_posweb.openapi.schemas import DATE_PATTERN
from flask_posweb.openapi.schemas import SPACE
from flask_posweb.payload import Loader
from flask_posweb.payload import validated
from flask_posweb.schemas.base import lenient
from flask_posweb.schemas.fields import DateOrDateTime
from flask_posweb.sending import sample

from .conftest import KEY

ENDPOINTS = [*EVENTS, *(f"loyalty_{name}" for name in CALLS)]
Body = dict[str, t.Any]


class Judges:
    """The library and the document of one app, on the same bodies."""

    def __init__(self, strict_presence: bool) -> None:
        app = Flask(__name__)
        app.config.update(
            TESTING=True,
            POSWEB_API_KEYS=[KEY],
            POSWEB_INBOX=False,
            POSWEB_STRICT_PRESENCE=strict_presence,
        )
        PosWeb(app)
        self.strict = strict_presence
        self.document = openapi_document(app)
        operations = {
            operation["operationId"]: operation
            for item in self.document["paths"].values()
            for operation in item.values()
        }
        self.validators = {}
        for name in ENDPOINTS:
            body = operations[name]["requestBody"]["content"]["application/json"]["schema"]
            schema = {**body, "components": self.document["components"]}
            self.validators[name] = OAS31Validator(schema)

    def library(self, name: str, raw: bytes) -> bool:
        """Whether the library accepts the body (a 422 is the only refusal expected)."""
        loader: Loader = EVENTS[name] if name in EVENTS else CALLS[name.removeprefix("loyalty_")]
        try:
            validated(loader, raw, strict=self.strict)
        except ValidationFailedError:
            return False
        return True

    def schema(self, name: str, raw: bytes) -> bool:
        return bool(self.validators[name].is_valid(json.loads(raw)))


JUDGES = {strict: Judges(strict) for strict in (False, True)}


@pytest.fixture(params=[False, True], ids=["marks-uncertain", "strict-presence"])
def judges(request: pytest.FixtureRequest) -> Judges:
    return JUDGES[request.param]


def body(name: str) -> Body:
    return t.cast(Body, json.loads(sample(name)))


def encoded(value: Body) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize("name", ENDPOINTS)
def test_every_sample_is_valid_for_its_operation(judges: Judges, name: str) -> None:
    raw = sample(name)
    assert judges.library(name, raw)
    errors = [error.message for error in judges.validators[name].iter_errors(json.loads(raw))]
    assert errors == []


def _parent(data: Body, path: str) -> tuple[t.Any, t.Any]:
    """The container holding the last step of a dotted path (``Variants.0.Code``), and
    that step."""
    target: t.Any = data
    *parents, last = path.split(".")
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    return target, int(last) if isinstance(target, list) else last


def changed(path: str, value: t.Any) -> Callable[[Body], None]:
    """Set ``value`` at a dotted path."""

    def change(data: Body) -> None:
        target, key = _parent(data, path)
        target[key] = value

    return change


def dropped(path: str) -> Callable[[Body], None]:
    def drop(data: Body) -> None:
        target, key = _parent(data, path)
        del target[key]

    return drop


#: Bodies the library refuses with 422 whatever the presence setting.
REFUSED = {
    "money as text": ("payment_created", changed("Amount", "a lot")),
    "money as a boolean": ("invoice_created", changed("Gross", True)),
    "an object as text": ("payment_created", changed("Method", {"name": "QRIS"})),
    "a number for an object": ("invoice_created", changed("Customer", 5)),
    "an object for a list": ("transfer_order_created", changed("Variants", {})),
    "a fraction for a count": ("shift_closed", changed("TotalInvoice", 2.5)),
    "a word for a count": ("customer_created", changed("Gender", "female")),
    "an unknown boolean word": ("product_created", changed("Discontinued", "maybe")),
    "a list item of the wrong type": ("product_created", changed("Tags.0", ["coffee"])),
    "missing exact mark": ("payment_created", dropped("Amount")),
    "missing exact date": ("payment_written_off", dropped("Date")),
    "null for an exact mark": ("payment_updated", changed("InvoiceID", None)),
    "empty exact mark": ("payment_deleted", changed("Method", "")),
    "empty exact date": ("payment_created", changed("Created", "")),
    "loyalty mark missing": ("loyalty_validate_coupon", dropped("Key")),
    "loyalty id too long": ("loyalty_order_complete", changed("ID", "x" * 201)),
    "money too large": ("payment_created", changed("Amount", 1e31)),
    "money too negative": ("invoice_created", changed("Gross", -2e31)),
    "money too small": ("payment_created", changed("Amount", 1e-31)),
    "money far too large": ("shift_closed", changed("SalesNTax", 1e300)),
    "count too large": ("shift_closed", changed("Visitor", 10**31)),
    "29 February of a common year": ("payment_created", changed("Date", "2026-02-29")),
    "31 April": ("invoice_created", changed("Date", "2026-04-31")),
    "hour 24": ("shift_closed", changed("Open", "2026-11-27T24:00:00")),
    "second 60": ("shift_closed", changed("Close", "2026-11-27T22:01:60")),
    "8 fractional digits": ("payment_created", changed("Created", "2026-11-27T14:05:31.44102931")),
    "a zone of 24 hours": ("invoice_created", changed("Created", "2026-11-27T14:05:12+24:00")),
    "a day-first date": ("adjustment_created", changed("Date", "24-11-2026")),
    "a zone without a time": ("transfer_order_created", changed("Date", "2026-11-26Z")),
    "year 0": ("invoice_created", changed("DueDate", "0000-01-01")),
    "a date as a number": ("payment_created", changed("Date", 20261127)),
    "text for a date": ("shift_closed", changed("Session.Start", "yesterday")),
}


@pytest.mark.parametrize(("name", "change"), REFUSED.values(), ids=list(REFUSED))
def test_what_the_library_refuses_the_schema_refuses(
    judges: Judges, name: str, change: Callable[[Body], None]
) -> None:
    data = body(name)
    change(data)
    raw = encoded(data)
    assert not judges.library(name, raw)
    assert not judges.schema(name, raw)


#: Bodies lacking (or emptying) a field DealPOS marks required where its marks are
#: uncertain: accepted unless POSWEB_STRICT_PRESENCE.
UNCERTAIN = {
    "customer without Email": ("customer_created", dropped("Email")),
    "customer with an empty Email": ("customer_created", changed("Email", "")),
    "customer without Gender": ("customer_created", changed("Gender", None)),
    "adjustment without lines": ("adjustment_created", dropped("AdjustedInventory")),
    "adjustment with no lines": ("adjustment_created", changed("AdjustedInventory", [])),
    "a line without its code": ("adjustment_created", dropped("AdjustedInventory.0.Code")),
    "transfer with a null line": ("transfer_order_created", changed("Variants.0", None)),
    "shift without a session": ("shift_closed", dropped("Session")),
    "transfer with a blank date": ("transfer_order_created", changed("Date", "  ")),
    "sales order without a customer": ("sales_order_created", dropped("Customer")),
}


@pytest.mark.parametrize(("name", "change"), UNCERTAIN.values(), ids=list(UNCERTAIN))
def test_uncertain_marks_are_enforced_exactly_where_the_library_enforces_them(
    judges: Judges, name: str, change: Callable[[Body], None]
) -> None:
    data = body(name)
    change(data)
    raw = encoded(data)
    assert judges.library(name, raw) is not judges.strict
    assert judges.schema(name, raw) is not judges.strict


#: Shapes DealPOS sends that a bare ``format: date-time`` would refuse.
ACCEPTED = {
    "a date only": ("invoice_created", changed("Date", "2020-07-01")),
    "no zone, 7 digits": ("invoice_created", changed("Created", "2021-08-20T10:28:56.6691072")),
    "no seconds": ("shift_closed", changed("Open", "2021-08-20 10:28")),
    "a comma": ("shift_closed", changed("Close", "2021-08-20T10:28:56,5+0700")),
    "no date": ("payment_created", changed("Date", "0001-01-01T00:00:00")),
    "29 February of a leap year": ("payment_created", changed("Date", "2024-02-29")),
    "surrounding white space": ("payment_created", changed("Date", "\u3000 2026-11-27\n")),
    "a number as text": ("payment_created", changed("InvoiceID", 1234567)),
    "a decimal as text": ("customer_created", changed("Phone", 62.5)),
    "a whole float count": ("shift_closed", changed("Visitor", 240.0)),
    "a boolean word": ("product_created", changed("Discontinued", "Yes")),
    "a boolean number": ("product_created", changed("Discontinued", 0)),
    "the largest money": ("payment_created", changed("Amount", 9.99e30)),
    "the smallest money": ("payment_created", changed("Amount", 1e-30)),
    "zero": ("payment_created", changed("Amount", -0.0)),
    "an unknown field": ("payment_created", changed("TagID", {"any": ["thing"]})),
    "an unknown nested field": ("invoice_created", changed("Customer.Loyal", True)),
}


@pytest.mark.parametrize(("name", "change"), ACCEPTED.values(), ids=list(ACCEPTED))
def test_what_the_library_accepts_the_schema_accepts(
    judges: Judges, name: str, change: Callable[[Body], None]
) -> None:
    data = body(name)
    change(data)
    raw = encoded(data)
    assert judges.library(name, raw)
    assert judges.schema(name, raw)


def numeric(text: str) -> bool:
    """Text the library reads as a number where a number is due (the one known difference)."""
    try:
        decimal.Decimal(text.strip())
    except (decimal.InvalidOperation, ValueError):
        return False
    return True


words = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
date_like = st.builds(
    "{}{:04d}-{:02d}-{:02d}{}{}".format,
    st.sampled_from(["", " ", "\u3000", "\u200b"]),
    st.integers(0, 9999),
    st.integers(0, 13),
    st.integers(0, 32),
    st.sampled_from(["", "T10:28", " 23:59:59", "T10:28:56.6691072", "T24:00", "T10:28:60"])
    | st.builds("T10:28:5{}.{}".format, st.integers(0, 9), st.text("0123456789", max_size=9)),
    st.sampled_from(["", "Z", "+07:00", "-0530", "+23:59", "+23:60", "+22:99", "+24", "z", "\n"]),
)
numbers = (
    st.integers(-(10**30) + 1, 10**30 - 1)
    | st.integers(-999, 999).map(lambda k: k * 10**30)
    | st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda f: f == 0 or 1e-40 < abs(f) < 1e40
    )
    | st.sampled_from([1e31, -1e31, 1e-30, -1e-30, 1e-31, 9.99e30, 2.5, 3.0, -0.0])
)
scalars = (
    st.none()
    | st.booleans()
    | numbers
    | (words | date_like | st.sampled_from(["Yes", "no", "TRUE", "maybe", ""])).filter(
        lambda text: not numeric(text)
    )
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(words, inner, max_size=3),
    max_leaves=8,
)


def places(value: t.Any, path: tuple[t.Any, ...] = ()) -> list[tuple[t.Any, ...]]:
    """Every path in a body, nested objects and list items included."""
    found: list[tuple[t.Any, ...]] = []
    keys = value.keys() if isinstance(value, dict) else range(len(value))
    for key in keys:
        found.append((*path, key))
        if isinstance(value[key], (dict, list)):
            found += places(value[key], (*path, key))
    return found


@st.composite
def mutated(draw: st.DrawFn, name: str) -> bytes:
    """``name``'s sample with a few fields dropped or replaced, at any depth, and
    maybe a declared field the sample lacks added."""
    data = body(name)
    loader = EVENTS[name] if name in EVENTS else CALLS[name.removeprefix("loyalty_")]
    schema = loader.schema if name in EVENTS else loader.request_schema  # type: ignore[union-attr]
    candidates = places(data) + [(key,) for key in schema._declared_fields if key not in data]
    for path in draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=3, unique=True)):
        target: t.Any = data
        try:
            for key in path[:-1]:
                target = target[key]
            if isinstance(target, dict) and draw(st.booleans()):
                target.pop(path[-1], None)
            elif isinstance(target, dict) or path[-1] < len(target):
                target[path[-1]] = draw(values)
        except (KeyError, IndexError, TypeError):  # an earlier change removed the way there
            continue
    return encoded(data)


@pytest.mark.parametrize("name", ENDPOINTS)
@settings(max_examples=15, deadline=None)
@given(data=st.data(), strict=st.booleans())
def test_the_schema_and_the_library_agree_on_any_body(
    name: str, data: st.DataObject, strict: bool
) -> None:
    raw = data.draw(mutated(name))
    judges = JUDGES[strict]
    note(raw.decode())
    assert judges.schema(name, raw) == judges.library(name, raw)


def judged_schema(name: str, strict: bool) -> type[ma.Schema]:
    """The schema the library loads ``name``'s bodies with."""
    if name not in EVENTS:
        return CALLS[name.removeprefix("loyalty_")].request_schema
    event = EVENTS[name]
    return event.schema if strict or event.exact_marks else lenient(event.schema)


def field_at(schema: type[ma.Schema], path: tuple[t.Any, ...]) -> fields.Field[t.Any] | None:
    """The field that judges the value at ``path``; ``None`` inside anything unknown."""
    owner: t.Any = schema
    field: fields.Field[t.Any] | None = None
    for key in path:
        if isinstance(key, int):
            field = field.inner if isinstance(field, fields.List) else None
        else:
            if field is not None:
                owner = field.nested if isinstance(field, fields.Nested) else None
            known = isinstance(owner, type) and issubclass(owner, ma.Schema)
            field = owner._declared_fields.get(key) if known else None
        if field is None:
            return None
    return field


def signature(field: fields.Field[t.Any] | None) -> tuple[t.Any, ...]:
    """What a field accepts depends on these only."""
    if field is None:
        return ("unknown",)
    inner = signature(field.inner) if isinstance(field, fields.List) else ()
    nested = field.nested if isinstance(field, fields.Nested) else None
    marks = (field.required, field.allow_none, getattr(field, "non_empty", None))
    return (type(field), marks, tuple(map(repr, field.validators)), inner, nested)


#: Values that tell the types and bounds apart; DROP removes the field.
DROP = object()
PROBES: list[t.Any] = [
    DROP, None, True, False, 0, 1, -0.0, 2.5, 3.0, 10**30, -(10**30), 9 * 10**30, 10**31, 10**250,
    1e31, -1e31, 9.99e30, 1e-30, -1e-30, 1e-31, 1e40, "", "  ", "x", "Yes", "off", "maybe",
    "x" * 201, "2024-02-29", "2023-02-29", "2024-02-29T23:59:59.1234567+23:59",
    "2024-02-29T24:00", "2024-02-29T10:00+23:60", " 2024-02-29 ", "0001-01-01T00:00:00",
    [], [None], [1], ["a"], [{}], {}, {"ID": 1}, {"Code": None},
]  # fmt: skip


def probe_places(strict: bool) -> list[tuple[str, tuple[t.Any, ...]]]:
    """One place in some sample for each kind of field the library judges (and for
    unknown fields)."""
    seen: set[tuple[t.Any, ...]] = set()
    chosen = []
    for name in ENDPOINTS:
        schema = judged_schema(name, strict)
        data = body(name)
        absent = [(key,) for key in schema._declared_fields if key not in data]
        for path in places(data) + absent:
            kind = signature(field_at(schema, path))
            if kind not in seen:
                seen.add(kind)
                chosen.append((name, path))
    return chosen


def test_the_schema_and_the_library_agree_on_every_kind_of_field(judges: Judges) -> None:
    disagree = []
    chosen = probe_places(judges.strict)
    for (name, path), probe in itertools.product(chosen, PROBES):
        data = body(name)
        target = data
        for key in path[:-1]:
            target = target[key]
        if probe is DROP:
            if isinstance(target, list):
                continue
            del target[path[-1]]
        else:
            target[path[-1]] = probe
        raw = encoded(data)
        if judges.schema(name, raw) != judges.library(name, raw):
            disagree.append((name, path, probe))
    assert disagree == []
    assert len(chosen) > 30


def date_texts() -> list[str]:
    """Dates around every calendar edge, in every shape, and near misses."""
    dates = [
        f"{year}-{month:02d}-{day:02d}"
        for year, month, day in itertools.product(
            ["0000", "0001", "0004", "0100", "0400", "1900", "2000", "2023", "2024", "9999"],
            range(14),
            [0, 1, 28, 29, 30, 31, 32],
        )
    ]
    times = [
        "", "T00:00", "T23:59", "T24:00", "T12:60", "T12:30:59", "T12:30:60", "T1:30",
        " 12:30:00", "t12:30", "T12:30:00.1", "T12:30:00.1234567", "T12:30:00.12345678",
        "T12:30:00,5", "T12:30:00.", "T12:30.5",
    ]  # fmt: skip
    zones = [
        "", "Z", "z", "+00", "-00:00", "+07:00", "+0700", "+07:0", "+23", "+23:59", "+23:60",
        "+22:99", "-22:99", "+24", "+24:00", "+2359", "+2360", "UTC",
    ]  # fmt: skip
    texts = [date + time for date in dates for time in times]
    texts += [f"2024-02-29{time}{zone}" for time in times for zone in zones]
    texts += [f"{pad}2024-02-29T10:00{pad}" for pad in [" ", "\t\n", "\x1c", "\u3000", "\u200b"]]
    texts += ["", " ", "\u2028", "\u200b", "2024-2-29", "20240229", "2024-02-29T", "x2024-02-29"]
    return texts


@pytest.mark.parametrize("non_empty", [False, True], ids=["blank-allowed", "non-empty"])
def test_the_date_pattern_admits_exactly_what_the_library_parses(non_empty: bool) -> None:
    field = DateOrDateTime(non_empty=non_empty)
    pattern = re.compile(DATE_PATTERN if non_empty else BLANK_OR_DATE_PATTERN)
    texts = date_texts()
    disagree = []
    for text in texts:
        try:
            field.deserialize(text)
            accepted = True
        except Exception:
            accepted = False
        if (pattern.search(text) is not None) != accepted:
            disagree.append(text)
    assert disagree == []
    assert sum(pattern.search(text) is not None for text in texts) > 1000


def test_white_space_is_what_str_strip_removes() -> None:
    everything = "".join(map(chr, range(0x110000)))
    assert re.findall(SPACE, everything) == [c for c in everything if c.isspace()]


def test_number_bounds_never_admit_what_the_library_refuses() -> None:
    money = JUDGES[False].document["components"]["schemas"]["Money"]
    # Read as exact decimals, the bounds are inside the library's: a validator
    # reading them as floats or as decimals admits nothing the library refuses.
    assert decimal.Decimal(money["exclusiveMaximum"]) <= 10**31
    assert decimal.Decimal(money["exclusiveMinimum"]) >= -(10**31)
    assert decimal.Decimal(money["not"]["exclusiveMaximum"]) >= decimal.Decimal("1e-30")
    assert money["x-max-significant-digits"] == 30
