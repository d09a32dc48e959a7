"""The log page's views: the deliveries, one delivery, replays, loyalty answers.

Every request passes the host's access check first (``POSWEB_DASHBOARD_ACCESS``),
and every ``POST`` a CSRF token (Flask-WTF's ``validate_csrf``, in these views
only). Replays run here, in the request, as ``flask posweb replay`` does, and
answer with a redirect to a page that shows their outcome once (Post/Redirect/
Get), so that reloading that page never replays again.

.. versionadded:: 0.2
"""

from __future__ import annotations

import collections
import datetime as dt
import inspect
import time
import typing as t
from collections.abc import Mapping

from flask import Blueprint
from flask import abort
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask_wtf.csrf import generate_csrf
from flask_wtf.csrf import validate_csrf
from werkzeug.wrappers import Response
from wtforms.validators import ValidationError

from ..calls import CALLS
from ..config import DashboardSettings
from ..dispatch import replay
from ..durations import human
from ..events import EVENTS
from ..exceptions import StoreError
from ..inbox import MAX_ID
from ..inbox import STATUSES
from ..inbox import Attempt
from ..inbox import Delivery
from ..inbox import MerchantSummary
from ..inbox import utcnow
from ..state import PosWebState
from ..state import get_state
from .query import Query
from .query import form_time
from .query import pretty_json
from .query import read_id
from .query import read_query

__all__ = ["BULK_LIMIT", "PAGE_SIZE", "create_dashboard"]

#: Deliveries per page of the list.
PAGE_SIZE = 50
#: Merchants shown by name above the list (those waiting longest first).
MERCHANTS_SHOWN = 20
#: Deliveries one "replay the failed ones" runs in its request, oldest first:
#: receivers run in the request, which must end. More: run it again, or
#: ``flask posweb replay --failed``.
BULK_LIMIT = 100

Page = tuple[str, int]
#: The session key of a replay's outcome, shown once by the page the replay
#: redirects to. The session carries the CSRF token already; not ``flash``,
#: whose first reader takes the host app's own messages too.
REPLAYED = "posweb_replayed"
#: Seconds within which the page a replay redirects to shows its outcome.
REPLAYED_SHOWN_FOR = 60

#: What each status means, for someone who is not the developer.
STATUS_HELP = {
    "pending": "Waiting for its receivers: due now, or being dispatched.",
    "failed": "A receiver failed. It is retried at the next attempt time.",
    "stranded": "It waits for receivers that no running dispatcher has (renamed or removed "
    "by a deploy). Adopt it to run the receivers this app has.",
    "processed": "Every receiver succeeded.",
    "dead": "A receiver failed on every attempt. Only a replay runs it again.",
    "unhandled": "No receiver subscribes to this event.",
    "rejected": "The body did not match the event's schema. A replay validates it again.",
}
#: What a replay does, by status (see ``flask_posweb.inbox.states.REPLAY``).
REPLAY_HELP = {
    "pending": "Replay runs it now.",
    "failed": "Replay runs the receivers that have not succeeded, now.",
    "stranded": "Replay makes it due again for the receivers it expects; adopt it to run "
    "this app's instead.",
    "dead": "Replay runs the receivers that have not succeeded, with fresh attempts.",
    "processed": "Replay runs every receiver again.",
    "unhandled": "Replay runs every receiver again.",
    "rejected": "Replay validates the body again, then runs the receivers.",
}
#: Links above the list that set "from" (seconds before now).
RECENT = (("Last hour", 3600), ("Last 24 hours", 86400), ("Last 7 days", 7 * 86400))


def create_dashboard() -> Blueprint:
    """The log page's blueprint (registered by
    :func:`~flask_posweb.dashboard.register_dashboard`)."""
    bp = Blueprint(
        "posweb_dashboard",
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )
    bp.before_request(admit)
    bp.after_request(protect)
    bp.context_processor(helpers)
    bp.register_error_handler(StoreError, store_unavailable)
    bp.add_url_rule("/", "deliveries", deliveries)
    # An id beyond what the store holds matches no route: a 404, never a database error.
    one = f"/<int(min=1, max={MAX_ID}):delivery_id>"
    bp.add_url_rule(one, "delivery", delivery)
    bp.add_url_rule(f"{one}/replay", "replay_one", replay_one, methods=["POST"])
    bp.add_url_rule(f"{one}/adopt", "adopt_one", adopt_one, methods=["POST"])
    bp.add_url_rule("/replay", "replay_failed", replay_failed, methods=["GET", "POST"])
    bp.add_url_rule("/replayed", "replayed", replayed)
    bp.add_url_rule("/loyalty", "loyalty", loyalty)
    return bp


def _settings() -> DashboardSettings:
    settings = get_state().settings.dashboard
    assert settings is not None  # the blueprint exists only when it is on
    return settings


def admit() -> Response | None:
    """The host's access check, before anything else; fails closed.

    Only ``True`` admits: ``False`` or ``None`` is a 403, a response (the
    host's login redirect) is sent instead of the page, and anything else is
    a mistake (``lambda: user.is_admin`` where ``is_admin`` is a method, an
    ``async`` check) that must not admit anyone: an error.
    """
    verdict = _settings().access()
    if isinstance(verdict, Response):
        return verdict
    if verdict is True:
        return None
    if inspect.isawaitable(verdict) and hasattr(verdict, "close"):
        verdict.close()  # never awaited: no "coroutine was never awaited" warning
    if verdict:
        raise TypeError(
            f"POSWEB_DASHBOARD_ACCESS must return True, False or a response, not {verdict!r}."
        )
    abort(403)


def protect(response: Response) -> Response:
    """Deliveries hold customers' data: never cached, never framed, no script runs."""
    if request.endpoint != "posweb_dashboard.static":
        response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def helpers() -> dict[str, t.Any]:
    """Names the page's templates use."""
    zone = _settings().timezone

    def when(moment: dt.datetime | None) -> str:
        if moment is None:
            return "—"
        local = moment.replace(tzinfo=dt.timezone.utc).astimezone(zone)
        return f"{local:%Y-%m-%d %H:%M:%S} {local:%Z}"

    def iso(moment: dt.datetime) -> str:
        return moment.replace(tzinfo=dt.timezone.utc).astimezone(zone).isoformat()

    def title(event: str) -> str:
        return EVENTS[event].title if event in EVENTS else event

    def call_title(call: str) -> str:
        return CALLS[call].title if call in CALLS else call

    return {
        "csrf_token": generate_csrf,
        "when": when,
        "iso": iso,
        "title": title,
        "call_title": call_title,
        "bulk_limit": BULK_LIMIT,
        "zone": dt.datetime.now(zone).strftime("%Z"),
        "inbox_name": get_state().settings.inbox_name,
        "STATUSES": STATUSES,
        "STATUS_HELP": STATUS_HELP,
    }


def _page(template: str, status: int = 200, **context: t.Any) -> Page:
    return render_template(f"posweb_dashboard/{template}", **context), status


def _error(status: int, heading: str, message: str) -> Page:
    return _page("error.html", status, heading=heading, message=message)


def store_unavailable(error: StoreError) -> Page:
    return _error(503, "The inbox is unavailable", f"{error} Try again in a moment.")


def _csrf_refused() -> Page | None:
    """``None`` when the form carries a valid CSRF token of this session."""
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError as exc:
        return _error(
            400,
            "This form cannot be sent",
            f"{exc} Go back, reload the page and try again.",
        )
    return None


def _query(args: t.Any) -> Query:
    return read_query(args, _settings(), utcnow())


def deliveries() -> Page:
    """Deliveries newest first, their counts per status, filters, pages."""
    query = _query(request.args)
    inbox = get_state().require_inbox()
    rows: list[Delivery] = []
    counts: dict[str, int] = {}
    merchants: list[MerchantSummary] = []
    more = False
    if not query.errors:
        # One grouped read for both: the counts per status (of the merchants
        # chosen) and the merchants (of the statuses chosen).
        every = inbox.merchants(query.filter(statuses=(), merchants=()))
        chosen = [m for m in every if not query.merchants or m.merchant in query.merchants]
        counts = {status: sum(m.counts[status] for m in chosen) for status in STATUSES}
        if any(m.merchant is not None for m in every):
            merchants = every
        found = inbox.deliveries(query.filter(), limit=PAGE_SIZE + 1, before=query.before)
        rows, more = found[:PAGE_SIZE], len(found) > PAGE_SIZE
    zone, now = _settings().timezone, utcnow()
    recent = [(label, form_time(now - dt.timedelta(seconds=s), zone)) for label, s in RECENT]
    return _page(
        "list.html",
        400 if query.errors else 200,
        query=query,
        rows=rows,
        counts=counts,
        failed=sum(counts.get(s, 0) for s in query.failed),
        more=more,
        recent=recent,
        search_range=human(_settings().search_range),
        events=EVENTS.values(),
        merchants=merchants[:MERCHANTS_SHOWN],
        more_merchants=max(0, len(merchants) - MERCHANTS_SHOWN),
        section="deliveries",
    )


def delivery(delivery_id: int) -> Page:
    """One delivery: headers, body, errors, missing fields, every receiver attempt."""
    found = get_state().require_inbox().get(delivery_id)
    if found is None:
        return _missing(delivery_id)
    tally = _recall(str(delivery_id))
    return _detail(found, outcome=None if tally is None else next(iter(tally), "busy"))


def _missing(delivery_id: int) -> Page:
    return _error(
        404,
        f"No delivery #{delivery_id}",
        "There is no such delivery in this inbox: a wrong number, or deleted after its "
        "retention period.",
    )


def _detail(found: Delivery, status: int = 200, outcome: str | None = None) -> Page:
    return _page(
        "detail.html",
        status,
        delivery=found,
        attempts=[Attempt.from_stored(o) for o in reversed(found.outcomes)],
        body=pretty_json(found.raw),
        raw=found.raw.decode("utf-8", "replace"),
        replay_help=REPLAY_HELP[found.status],
        lacking=sorted(get_state().require_dispatcher().lacking_for(found)),
        outcome=outcome,
        section="deliveries",
    )


def replay_one(delivery_id: int, adopt: bool = False) -> Page | Response:
    """Replay one delivery now, here; its page then shows what became of it."""
    refused = _csrf_refused()
    if refused is not None:
        return refused
    state = get_state()
    if state.require_inbox().get(delivery_id) is None:
        return _missing(delivery_id)
    _remember(str(delivery_id), replay(state, [delivery_id], adopt=adopt))
    return redirect(url_for(".delivery", delivery_id=delivery_id), 303)


def adopt_one(delivery_id: int) -> Page | Response:
    """Replay one delivery for this app's receivers (``flask posweb replay
    --adopt``): what a delivery stranded by a deploy needs."""
    return replay_one(delivery_id, adopt=True)


def replay_failed() -> Page | Response:
    """Replay the failed (and dead) deliveries the filter chooses: ``GET`` asks
    to confirm, with their count; ``POST`` replays them, oldest first, then
    redirects to :func:`replayed`."""
    state = get_state()
    form = request.form if request.method == "POST" else request.args
    query = _query(form)
    if query.errors:
        return _page("confirm.html", 400, query=query, ids=[], section="deliveries")
    if request.method == "GET":
        ids = _failed_ids(state, query)
        return _page("confirm.html", query=query, ids=ids, section="deliveries")
    refused = _csrf_refused()
    if refused is not None:
        return refused
    upto = read_id(form.get("upto"))
    if upto is None:  # the confirmation page always sends one: a form made elsewhere
        return _error(
            400,
            "This form cannot be sent",
            "It does not say up to which delivery to replay. Go back, reload the page and "
            "try again.",
        )
    # Only those the operator confirmed: none that failed after the count was shown.
    ids = [i for i in _failed_ids(state, query) if i <= upto]
    tally = replay(state, ids[:BULK_LIMIT]) if ids else collections.Counter[str]()
    _remember("failed", tally)
    return redirect(url_for(".replayed", **query.args(before=None)), 303)


def replayed() -> Page | Response:
    """What the last "replay the failed ones" did, once: a reload (or the
    address opened later) shows the list instead, and replays nothing."""
    query, tally = _query(request.args), _recall("failed")
    if tally is None:
        return redirect(url_for(".deliveries", **query.args(before=None)), 303)
    left = len(_failed_ids(get_state(), query)) if not query.errors else 0
    return _page("replayed.html", query=query, tally=tally, left=left, section="deliveries")


def _remember(replayed: str, tally: Mapping[str, int]) -> None:
    """Keep a replay's tally for the page it redirects to."""
    session[REPLAYED] = {"replayed": replayed, "tally": dict(tally), "at": time.time()}


def _recall(replayed: str) -> dict[str, int] | None:
    """The tally of the replay of ``replayed`` (a delivery id, or ``"failed"``)
    that redirected here, once; ``None`` if none did. A tally whose redirect
    was never followed (a 503, a closed tab) is not shown a minute later as
    "just now"."""
    kept = session.get(REPLAYED)
    if not isinstance(kept, dict) or kept.get("replayed") != replayed:
        return None
    del session[REPLAYED]
    if time.time() - float(kept.get("at", 0)) > REPLAYED_SHOWN_FOR:
        return None
    return {str(k): int(v) for k, v in kept["tally"].items()}


def _failed_ids(state: PosWebState, query: Query) -> list[int]:
    if not query.failed:
        return []
    return state.require_inbox().ids(query.filter(statuses=query.failed))


def loyalty() -> Page:
    """Remembered loyalty answers, newest first (read-only)."""
    answers = get_state().require_inbox().answers
    return _page("loyalty.html", answers=answers.recent(), section="loyalty")
