"""What counts as a duplicate: the one rule.

DealPOS sends no delivery id, and it sends the same body again for two
reasons: its own retry, once, 7 s after a 5xx/408/429 (the same delivery),
and a resource that changed back (a product's stock going 24 -> 23 -> 24: a
new delivery whose body equals an earlier one). So a body is a duplicate of an
earlier delivery of the same event only

- from the same merchant (two shops' equal bodies are two deliveries),
- within ``POSWEB_DUPLICATE_WINDOW`` of that delivery's arrival (default 10
  minutes, far beyond DealPOS's 7 s), **and**
- if no other delivery of the same event about the same resource arrived in
  between: the resource is named by the event's ``resource_key`` in the
  catalogue (a payment's ``ID``); events without one, or bodies without the
  key, use the window alone.

A -> B -> A is three deliveries; A, A seconds apart is one.

The rule is kept as one row per *scope* in ``posweb_duplicates``: the latest
accepted delivery about a resource (or, without a resource, of a body), with
its body hash and arrival. A new delivery replaces the row unless the row
holds the same body within the window: one upsert, atomic on both databases,
so two identical bodies arriving at once on two web nodes are one delivery.
Refused bodies have scopes of their own, by body *and* reason (the same bytes
refused as 415, then as 422, are two refusals), and never stand between
accepted ones: receivers never saw them. A refusal whose earlier twin was
replayed since (and accepted) is a refusal of its own (see
:meth:`~flask_posweb.inbox.Inbox.reject` and :func:`rescope_statement`).

.. versionadded:: 0.2
"""

from __future__ import annotations

import hashlib
import json
import typing as t

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite

from .clock import Clock
from .tables import duplicates

__all__ = ["Scope", "claim_statement", "rescope_statement"]

U = duplicates.c


class Scope(t.NamedTuple):
    """Where a body is looked for: its scope key and its own hash."""

    key: str
    body_hash: str

    @classmethod
    def of(
        cls,
        inbox: str,
        merchant: str | None,
        event: str,
        raw: bytes,
        resource: str | None,
        *,
        refusal: t.Mapping[str, t.Any] | None = None,
    ) -> Scope:
        """The scope of a body of ``event`` that ``merchant`` sent to ``inbox``.

        :param merchant: who sent it: two merchants' equal bodies (a product with
            the same SKU and stock) are never duplicates of each other.
        :param resource: the value of the event's resource key in the body, if any.
        :param refusal: why the body was refused (its errors): a refused body's
            scope is its own bytes and this reason.
        """
        body_hash = hashlib.sha256(raw).hexdigest()
        if refusal is not None:
            reason = json.dumps(refusal, sort_keys=True, default=str)
            kind, subject = "refused", f"{body_hash}\0{reason}"
        elif resource is not None:
            kind, subject = "resource", resource
        else:
            kind, subject = "body", body_hash
        # The app's own keep 0.2's keys, so that a window open across the
        # upgrade still holds; a merchant's cannot meet them (no event is
        # named "merchant:...").
        whose = inbox if merchant is None else f"{inbox}\0merchant:{merchant}"
        key = hashlib.sha256(f"{whose}\0{event}\0{kind}\0{subject}".encode()).hexdigest()
        return cls(key, body_hash)


def claim_statement(
    dialect: sa.Dialect, clock: Clock, delivery_id: sa.ColumnElement[int] | None = None
) -> sa.Insert:
    """Make a new delivery the latest of its scope, unless it is a duplicate: the rule,
    as one upsert, atomic on both databases.

    Binds ``b_scope``, ``b_body_hash``, ``b_since`` (minus the window, in
    seconds) and, unless ``delivery_id`` says otherwise, ``b_delivery_id``.
    Changes one row when the delivery is new; none when the scope already holds
    the same body within the window (a duplicate).

    :param delivery_id: the new delivery's id, when the claim comes first
        (PostgreSQL's one-statement admission: the next value of its sequence).
    """
    insert = (postgresql.insert if dialect.name == "postgresql" else sqlite.insert)(duplicates)
    statement = insert.values(
        scope=sa.bindparam("b_scope"),
        delivery_id=sa.bindparam("b_delivery_id") if delivery_id is None else delivery_id,
        body_hash=sa.bindparam("b_body_hash"),
        seen_at=clock.now(),
    )
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[U.scope],
        set_={
            "delivery_id": excluded.delivery_id,
            "body_hash": excluded.body_hash,
            "seen_at": excluded.seen_at,
        },
        where=sa.not_(
            sa.and_(U.body_hash == excluded.body_hash, U.seen_at >= clock.plus("b_since"))
        ),
    )


def rescope_statement(clock: Clock) -> sa.Update:
    """Make a delivery the latest of its scope whatever the scope held: a
    refusal whose earlier twin is no longer rejected (it was replayed).

    Binds ``b_scope`` and ``b_delivery_id``.
    """
    return (
        duplicates.update()
        .where(U.scope == sa.bindparam("b_scope"))
        .values(delivery_id=sa.bindparam("b_delivery_id"), seen_at=clock.now())
    )
