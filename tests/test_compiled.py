"""The compiled fast path agrees with marshmallow, exactly, on random bodies."""

from __future__ import annotations

import copy
import datetime as dt
import json
import typing as t
from decimal import Decimal

import marshmallow as ma
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from flask_posweb import EVENTS
from flask_posweb.events import EventType
from flask_posweb.loyalty import CALLS
from flask_posweb.payload import parse
from flask_posweb.schemas.compiled import CompiledSchema
from flask_posweb.schemas.compiled import _Slow
from flask_posweb.schemas.compiled import compile_schema
from flask_posweb.sending import sample

#: Every compiled schema: each event's as declared, and without presence marks
#: (where its marks are uncertain), and each loyalty call's.
LOADERS: dict[str, CompiledSchema] = {
    **{name: event._loader._strict for name, event in EVENTS.items()},
    **{
        f"{name}/lenient": event._loader._lenient
        for name, event in EVENTS.items()
        if event._loader._lenient is not None
    },
    **{f"loyalty_{name}": call._loader._strict for name, call in CALLS.items()},
}
#: Schemas that use what the compiler does not know: marshmallow loads them.
NOT_COMPILED = {"loyalty_order_complete"}  # its ID has a Length validator

tricky = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "x",
            "0",
            "2021-08-20",
            "2021-08-20T10:28:56.6691072",
            "0001-01-01T00:00:00",
            "2021-02-30",
            "Yes",
            "true",
            "12.50",
            "NaN",
        ]
    ),
    st.text(max_size=8),
    st.integers(-(10**20), 10**20),
    st.sampled_from(
        [
            Decimal("1.10"),
            Decimal("-0"),
            Decimal("1E+2"),
            Decimal("3.0"),
            Decimal("NaN"),
            Decimal("Infinity"),
            Decimal("1E+1000000"),  # bounded before any int conversion
            Decimal("1E-50"),
            Decimal("123456789012345678901234567890.5"),
            10**40,
            0.5,
        ]
    ),
    st.booleans(),
    st.none(),
    st.just({}),
    st.just([]),
    st.lists(
        st.one_of(st.none(), st.integers(), st.text(max_size=3), st.just({"a": 1})), max_size=3
    ),
    st.dictionaries(st.sampled_from(["ID", "Name", "Code", "X"]), st.text(max_size=3), max_size=3),
)


@st.composite
def mutated(draw: st.DrawFn, value: t.Any, depth: int = 0) -> t.Any:
    """``value`` with random fields (at any depth) dropped, replaced or left alone."""
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            action = draw(st.sampled_from(["keep"] * 8 + ["recurse", "recurse", "drop", "replace"]))
            if action == "drop":
                continue
            if action == "replace":
                result[key] = draw(tricky)
            elif action == "recurse" and depth < 3:
                result[key] = draw(mutated(item, depth + 1))
            else:
                result[key] = item
        if draw(st.booleans()):
            result["XUnknown"] = draw(tricky)
        return result
    if isinstance(value, list):
        return [draw(mutated(item, depth + 1)) for item in value] + draw(
            st.lists(tricky, max_size=1)
        )
    return value


def same(a: t.Any, b: t.Any) -> bool:
    """Equal, and of the same types all the way down (``Decimal(1) == 1`` is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=False))
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple()
    return bool(a == b)


def _sample(name: str) -> bytes:
    return sample(name.partition("/")[0])


@pytest.mark.parametrize("name", list(LOADERS))
def test_every_schema_is_compiled_and_its_sample_takes_the_fast_path(name: str) -> None:
    loader = LOADERS[name]
    body = parse(_sample(name))
    if name in NOT_COMPILED:  # falls back to marshmallow, with the same result
        assert not loader.compiled
        assert same(loader.load(copy.deepcopy(body)), loader.schema.load(copy.deepcopy(body)))
        return
    assert loader.compiled and loader._fast is not None
    assert same(loader._fast(copy.deepcopy(body)), loader.schema.load(copy.deepcopy(body)))


@pytest.mark.parametrize("name", list(LOADERS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_the_fast_path_agrees_with_marshmallow(name: str, data: st.DataObject) -> None:
    loader = LOADERS[name]
    body = data.draw(mutated(json.loads(_sample(name), parse_float=Decimal)))
    try:
        expected = loader.schema.load(copy.deepcopy(body))
    except ma.ValidationError:
        expected = ma.ValidationError
    if loader._fast is None:
        assert name in NOT_COMPILED
        return
    try:
        fast = loader._fast(copy.deepcopy(body))
    except _Slow:
        return  # marshmallow decides: the fast path only ever takes the clear cases
    assert expected is not ma.ValidationError, (
        f"fast path accepted what marshmallow refuses: {body}"
    )
    assert same(fast, expected)
    # and the public loader gives exactly marshmallow's result either way
    assert same(loader.load(copy.deepcopy(body)), expected)


def test_what_is_not_compiled_falls_back_to_marshmallow() -> None:
    class Hooked(ma.Schema):
        name = ma.fields.String()

        @ma.post_load
        def shout(self, data: dict[str, t.Any], **kwargs: t.Any) -> dict[str, t.Any]:
            return {"name": data["name"].upper()}

    class Keyed(ma.Schema):
        name = ma.fields.String(data_key="Name")

    class Validated(ma.Schema):
        name = ma.fields.String(validate=ma.validate.OneOf(["a"]))

    class Dated(ma.Schema):
        when = ma.fields.DateTime()

    for schema in (Hooked(), Keyed(), Validated(), Dated(), Keyed(unknown=ma.RAISE)):
        assert compile_schema(schema) is None
        assert not CompiledSchema(schema).compiled
    assert CompiledSchema(Hooked()).load({"name": "x"}) == {"name": "X"}


def test_errors_are_marshmallows() -> None:
    event: EventType = EVENTS["payment_created"]
    with pytest.raises(ma.ValidationError) as error:
        event.load({"Amount": "lots", "Date": "2021-02-30"})
    assert error.value.messages["Amount"] == ["Not a valid number."]
    assert error.value.messages["Date"] == ["Not a valid date."]
    assert event.load(parse(sample("payment_created"))).data["Created"] == dt.datetime(
        2026, 11, 27, 14, 5, 31, 441029
    )


def test_an_event_schema_using_any_marshmallow_feature_still_works() -> None:
    """Maintainers may use all of marshmallow: what the compiler does not know
    falls back to marshmallow for that schema, with nothing else to change."""

    class Shouting(ma.Schema):
        class Meta:
            unknown = ma.INCLUDE

        name = ma.fields.String(data_key="Name", validate=ma.validate.OneOf(["kopi", "teh"]))

        @ma.pre_load
        def lower(self, data: dict[str, t.Any], **kwargs: t.Any) -> dict[str, t.Any]:
            return {**data, "Name": str(data.get("Name", "")).lower()}

    event = EventType("outlet_created", "Outlet", "Outlet Created", Shouting, "x")
    assert not event._loader.compiled
    assert event.load({"Name": "KOPI", "Extra": 1}).data == {"name": "kopi", "Extra": 1}
    with pytest.raises(ma.ValidationError):
        event.load({"Name": "beer"})
