"""Posting a payload as DealPOS would: for ``flask posweb send`` and manual tests.

.. versionadded:: 0.1
"""

from __future__ import annotations

import base64
import dataclasses
import difflib
import importlib.resources
import json
import typing as t
import urllib.error
import urllib.parse
import urllib.request

from .exceptions import PosWebError
from .exceptions import UnknownEventError
from .state import get_state

__all__ = [
    "Result",
    "SendError",
    "auth_headers",
    "basic_header",
    "sample",
    "sample_names",
    "send",
]


class SendError(PosWebError):
    """The server could not be reached, or refused the credentials' token request."""


USER_AGENT = "Flask-PosWeb send (as DealPOS)"


@dataclasses.dataclass(frozen=True)
class Result:
    """What the server answered."""

    status: int
    reason: str
    body: bytes


def sample_names() -> list[str]:
    """Every name with a built-in sample payload."""
    folder = importlib.resources.files("flask_posweb") / "samples"
    return sorted(
        p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")
    )


def sample(name: str) -> bytes:
    """The built-in sample payload of an event or loyalty call.

    :raises UnknownEventError: no sample by that name, with the closest names.
    """
    path = importlib.resources.files("flask_posweb") / "samples" / f"{name}.json"
    if not path.is_file():
        close = difflib.get_close_matches(name, sample_names(), n=3)
        hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownEventError(
            f"No event or loyalty call {name!r}; {hint or 'flask posweb events lists them.'}"
        )
    return path.read_bytes()


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Result:
    """POST and return the answer, whatever its status.

    :raises SendError: the server could not be reached (one line, no traceback).
    """
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"User-Agent": USER_AGENT, **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Result(response.status, response.reason, response.read())
    except urllib.error.HTTPError as error:
        return Result(error.code, error.reason, error.read())
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise SendError(f"Could not reach {url}: {reason}. Is the app running there?") from None


def _endpoint_url(name: str, url: str, merchant: str | None = None) -> str:
    """``url`` itself if it has a path, else ``url`` + this app's path for ``name``."""
    if urllib.parse.urlsplit(url).path.strip("/"):
        return url
    try:
        path = get_state().path(name, merchant)
    except KeyError:
        raise UnknownEventError(f"{name!r} is not an endpoint of this app.") from None
    except ValueError as exc:  # the URL is a merchant's
        raise SendError(f"{exc} (--merchant NAME)") from None
    return url.rstrip("/") + path


def basic_header(user_password: str) -> str:
    """An HTTP Basic ``Authorization`` value for ``"user:password"``."""
    return "Basic " + base64.b64encode(user_password.encode()).decode()


def auth_headers(
    fetch_token: t.Callable[[str, str], str], key: str | None = None
) -> dict[str, str]:
    """The credentials DealPOS would send, taken from the current app's configuration.

    The first configured mode wins: API key, HTTP Basic, then OAuth, for which
    ``fetch_token(client_id, secret)`` gets a token from the token URL.

    :param key: an API key to send instead.
    """
    settings = get_state().settings
    if key is not None:
        return {settings.api_key_header: key}
    if settings.api_keys:
        return {settings.api_key_header: settings.api_keys[0]}
    for user, passwords in settings.basic_auth.items():
        return {"Authorization": basic_header(f"{user}:{passwords[0]}")}
    for client_id, secrets in settings.oauth_clients.items():
        return {"Authorization": "Bearer " + fetch_token(client_id, secrets[-1])}
    return {}


TOKEN_FORM = urllib.parse.urlencode({"grant_type": "client_credentials"}).encode()


def _http_token(
    base_url: str, timeout: float, merchant: str | None = None
) -> t.Callable[[str, str], str]:
    def fetch(client_id: str, secret: str) -> str:
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": basic_header(f"{client_id}:{secret}"),
        }
        token_url = _endpoint_url("oauth_token", base_url, merchant)
        result = _post(token_url, TOKEN_FORM, headers, timeout)
        if result.status != 200:
            raise SendError(
                f"The token URL answered {result.status}: {result.body.decode('utf-8', 'replace')}"
            )
        return str(json.loads(result.body)["access_token"])

    return fetch


def _base(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def send(
    name: str,
    body: bytes,
    url: str,
    *,
    key: str | None = None,
    merchant: str | None = None,
    timeout: float = 30,
) -> Result:
    """POST ``body`` to the endpoint of ``name`` on the server at ``url``, with credentials.

    :param merchant: the merchant of the URL, when the blueprint is mounted per merchant.
    """
    target = _endpoint_url(name, url, merchant)
    headers = {
        "Content-Type": "application/json",
        **auth_headers(_http_token(_base(url), timeout, merchant), key),
    }
    return _post(target, body, headers, timeout)
