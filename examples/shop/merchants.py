"""The shop's merchants: the DealPOS shops that post to this app, each with its own
API keys, kept in the shop's own database (SQLAlchemy) and looked up by
Flask-PosWeb at each request (cached for ``POSWEB_CREDENTIALS_TTL``).

Only a key's SHA-256 digest is stored: a stolen database holds no key. A
merchant has several live keys during a rotation, and a revoked key stops
working within the cache's time, without a restart::

    flask --app examples/shop/app.py shop add-merchant acme    # prints acme's first key
    flask --app examples/shop/app.py shop add-key acme         # a second live key
    flask --app examples/shop/app.py shop revoke-key acme 1    # the first stops working
    flask --app examples/shop/app.py shop merchants            # who, and their keys

DealPOS is given the key in each merchant's back office; the URLs to paste
come from ``flask posweb events``: one URL for all merchants, since the key
says whose delivery it is. (Mounted at ``/dealpos/<merchant>``, the URL would
say it, and the key would have to be that merchant's.)
"""

from __future__ import annotations

import datetime as dt
import secrets

import click
import sqlalchemy as sa
from flask import Flask
from flask import current_app
from flask.cli import AppGroup

from flask_posweb.auth import CredentialQuery
from flask_posweb.auth import Credentials
from flask_posweb.auth import hashed

metadata = sa.MetaData()

merchants = sa.Table(
    "merchants",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.DateTime(), nullable=False),
)

keys = sa.Table(
    "merchant_keys",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("merchant", sa.String(64), sa.ForeignKey("merchants.name"), nullable=False),
    # "sha256:<hex>": what Flask-PosWeb compares with; indexed, as a presented
    # key is looked up by its digest (one URL for all merchants).
    sa.Column("digest", sa.String(80), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("revoked_at", sa.DateTime(), nullable=True),
)


def engine() -> sa.Engine:
    """The shop database's engine, one per app."""
    found = current_app.extensions.get("shop_merchants")
    if found is None:
        found = sa.create_engine("sqlite:///" + current_app.config["SHOP_DATABASE"])
        metadata.create_all(found)
        current_app.extensions["shop_merchants"] = found
    return found  # type: ignore[no-any-return]


def credentials(query: CredentialQuery) -> Credentials | None:
    """Flask-PosWeb's credentials lookup: whose key this is, or a merchant's keys.

    Asked by the merchant's name (a token it was issued, or a URL per merchant)
    or by a presented API key's digest; only live keys count.
    """
    live = keys.c.revoked_at.is_(None)
    if query.kind == "merchant":
        whose = sa.select(merchants.c.name).where(merchants.c.name == query.id)
    elif query.kind == "api_key":
        whose = sa.select(keys.c.merchant).where(keys.c.digest == f"sha256:{query.id}", live)
    else:  # HTTP Basic and OAuth clients: this shop gives its merchants keys only
        return None
    with engine().connect() as connection:
        name = connection.execute(whose).scalar()
        if name is None:
            return None
        digests = connection.execute(
            sa.select(keys.c.digest).where(keys.c.merchant == name, live)
        ).scalars()
        return Credentials(name, api_keys=list(digests))


shop = AppGroup("shop", help="The shop's merchants and their API keys.")


def _new_key(connection: sa.Connection, merchant: str) -> str:
    key = secrets.token_urlsafe(32)
    connection.execute(
        keys.insert().values(
            merchant=merchant, digest=hashed(key), created_at=dt.datetime.now(dt.timezone.utc)
        )
    )
    return key


@shop.command("add-merchant")
@click.argument("name")
def add_merchant(name: str) -> None:
    """Onboard a merchant: prints its first API key (shown once, never stored)."""
    with engine().begin() as connection:
        connection.execute(
            merchants.insert().values(name=name, created_at=dt.datetime.now(dt.timezone.utc))
        )
        click.echo(_new_key(connection, name))


@shop.command("add-key")
@click.argument("name")
def add_key(name: str) -> None:
    """Give a merchant one more live key (a rotation: revoke the old one once
    DealPOS sends the new one)."""
    with engine().begin() as connection:
        if connection.execute(sa.select(merchants).where(merchants.c.name == name)).first() is None:
            raise click.ClickException(f"No merchant {name!r}.")
        click.echo(_new_key(connection, name))


@shop.command("revoke-key")
@click.argument("name")
@click.argument("key_id", type=int)
def revoke_key(name: str, key_id: int) -> None:
    """Revoke one of a merchant's keys: refused within POSWEB_CREDENTIALS_TTL."""
    with engine().begin() as connection:
        done = connection.execute(
            keys.update()
            .where(keys.c.id == key_id, keys.c.merchant == name, keys.c.revoked_at.is_(None))
            .values(revoked_at=dt.datetime.now(dt.timezone.utc))
        ).rowcount
    if not done:
        raise click.ClickException(f"{name!r} has no live key {key_id}.")
    click.echo(f"Revoked key {key_id} of {name}.")


@shop.command("merchants")
def list_merchants() -> None:
    """The merchants and their keys (ids only: the keys themselves are not kept)."""
    with engine().connect() as connection:
        rows = connection.execute(
            sa.select(keys.c.merchant, keys.c.id, keys.c.revoked_at).order_by(
                keys.c.merchant, keys.c.id
            )
        )
        for merchant, key_id, revoked in rows:
            state = f"revoked {revoked:%Y-%m-%d %H:%M}" if revoked else "live"
            click.echo(f"{merchant}  key {key_id}  {state}")


def init_app(app: Flask) -> None:
    """The ``flask shop ...`` commands."""
    app.cli.add_command(shop)
