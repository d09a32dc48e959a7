"""The delivery log page in a real browser: headless Chromium, JavaScript off,
against the example shop under a real (threaded werkzeug) server on loopback.

Screenshots of the list and of one delivery, at desktop and phone widths, go
to ``tests/artifacts/`` (ignored by git). Needs Debian's ``chromium`` and
``chromium-driver`` (``.ci/run`` installs them): without them the tests are
skipped, except on CI, where they fail.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
import threading
import typing as t
from collections.abc import Iterator

import pytest
from flask import Flask
from werkzeug.serving import make_server

from flask_posweb import Filter
from flask_posweb.sending import sample
from flask_posweb.state import get_state
from flask_posweb.testing import PosWebClient

from .test_examples import load_example

pytestmark = pytest.mark.browser

ARTIFACTS = pathlib.Path(__file__).parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
#: Generous: a loaded shared machine, never a timing assertion.
WAIT = 20

if not os.environ.get("CI"):  # on CI, a missing browser fails the tests
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver", allow_module_level=True)
    pytest.importorskip("selenium")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


class Shop(t.NamedTuple):
    app: Flask
    url: str
    #: Delivery ids by what they are.
    ids: dict[str, int]


def payment(number: str, **extra: t.Any) -> dict[str, t.Any]:
    body = json.loads(sample("payment_created"))
    return {**body, "ID": f"p-{number}", "Number": f"KMG-PAY-{number}", **extra}


@pytest.fixture(scope="module")
def shop() -> Iterator[Shop]:
    """The example shop on a free loopback port, with deliveries of several statuses."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="posweb-browser-"))
    app: Flask = load_example("shop").create_app(
        {
            "TESTING": True,
            "DEBUG": True,  # the shop's access check: loopback clients, in debug mode
            "POSWEB_DATABASE_URL": f"sqlite:///{folder / 'inbox.sqlite3'}",
            "SHOP_DATABASE": str(folder / "shop.sqlite3"),
        }
    )
    app.test_client_class = PosWebClient
    client = t.cast(PosWebClient, app.test_client())
    ids: dict[str, int] = {}

    def deliver(label: str, event: str, body: t.Any) -> None:
        response = client.deliver(event, body)
        ids[label] = int(response.headers["X-PosWeb-Delivery"])

    for n in range(3):
        deliver(f"processed{n}", "payment_created", payment(f"00{n}"))
    deliver("invoice", "invoice_created", None)
    deliver("until_replay", "payment_created", payment("100", ShopFail="until-replay"))
    deliver("always", "payment_created", payment("200", ShopFail="always"))
    deliver("rejected", "payment_created", {"ID": "p-bad", "Amount": "lots"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Shop(app, f"http://127.0.0.1:{server.server_port}", ids)
    server.shutdown()
    thread.join(WAIT)
    get_state(app).close()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[t.Any]:
    """Headless Chromium with JavaScript off: the page needs none."""
    profile = tempfile.mkdtemp(prefix="posweb-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"profile.managed_default_content_settings.javascript": 2}
    )
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver: t.Any, name: str, width: int, height: int) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.set_window_size(width, height)
    driver.save_screenshot(str(ARTIFACTS / f"{name}-{width}.png"))
    driver.set_window_size(1280, 900)


def click(driver: t.Any, by: str, what: str) -> None:
    """Click what leads to one of the log page's pages, and wait until the
    browser shows all of it (its footer comes last)."""
    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(by, what).click()

    def left(_: t.Any) -> bool:
        try:
            page.tag_name  # noqa: B018  (asks the browser about the old page)
        except WebDriverException:  # stale, or "does not belong to the document"
            return True
        return False

    WebDriverWait(driver, WAIT).until(left)
    WebDriverWait(driver, WAIT).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "footer.foot"))
    )


def submit(driver: t.Any) -> None:
    click(driver, By.CSS_SELECTOR, "form.filters button[type=submit]")


def rows(driver: t.Any) -> list[dict[str, str]]:
    """The list's rows, as {column: text}."""
    found = []
    for row in driver.find_elements(By.CSS_SELECTOR, "table.deliveries tbody tr"):
        cells = row.find_elements(By.CSS_SELECTOR, "th, td")
        found.append({cell.get_attribute("data-label"): cell.text for cell in cells})
    return found


def statuses(driver: t.Any) -> set[str]:
    return {row["Status"].split()[0] for row in rows(driver)}


def test_the_list_shows_deliveries_of_several_statuses(shop: Shop, browser: t.Any) -> None:
    browser.get(shop.url + "/")
    click(browser, By.LINK_TEXT, "the delivery log page")
    assert browser.title.startswith("Deliveries")
    assert statuses(browser) == {"processed", "failed", "rejected"}
    assert len(rows(browser)) == len(shop.ids)
    newest = rows(browser)[0]
    assert newest["#"] == f"#{shop.ids['rejected']}" and newest["Event"] == "Payment Created"
    assert newest["Received"].endswith("UTC")
    failed = next(r for r in rows(browser) if r["#"] == f"#{shop.ids['always']}")
    assert failed["Receivers failed"] == "ledger" and failed["Attempts"] == "1"
    counts = browser.find_element(By.CSS_SELECTOR, "nav.counts").text
    assert "failed 2" in counts and "processed 4" in counts and "rejected 1" in counts
    screenshot(browser, "list", 1280, 1000)
    screenshot(browser, "list", 390, 1700)


def test_filters_narrow_the_list(shop: Shop, browser: t.Any) -> None:
    browser.get(shop.url + "/dealpos/log/")
    browser.find_element(By.CSS_SELECTOR, "input[name=status][value=failed]").click()
    submit(browser)
    assert statuses(browser) == {"failed"} and len(rows(browser)) == 2

    browser.get(shop.url + "/dealpos/log/")
    Select(browser.find_element(By.ID, "event")).select_by_visible_text("Invoice Created")
    submit(browser)
    assert [r["#"] for r in rows(browser)] == [f"#{shop.ids['invoice']}"]

    # Text in the bodies, within a bounded range: the quick link sets "from".
    click(browser, By.LINK_TEXT, "last 24 hours")
    Select(browser.find_element(By.ID, "event")).select_by_visible_text("Any event")
    browser.find_element(By.ID, "text").send_keys("KMG-PAY-100")
    submit(browser)
    assert [r["#"] for r in rows(browser)] == [f"#{shop.ids['until_replay']}"]

    # Without a range, a text search is refused, and says why.
    browser.find_element(By.ID, "since").clear()
    submit(browser)
    alert = browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert "time range" in alert and not rows(browser)


def test_the_detail_shows_the_traceback(shop: Shop, browser: t.Any) -> None:
    browser.get(f"{shop.url}/dealpos/log/{shop.ids['always']}")
    assert browser.find_element(By.TAG_NAME, "h1").text.endswith("Payment Created")
    traceback = browser.find_element(By.CSS_SELECTOR, "details[open] pre.traceback").text
    assert "LedgerUnavailable: The ledger refused payment_created" in traceback
    assert "post_to_ledger" in traceback
    body = browser.find_element(By.CSS_SELECTOR, "pre.body").text
    assert '"ShopFail": "always"' in body and '"Amount": 75240' in body
    headers = browser.find_element(By.CSS_SELECTOR, "table.headers").text.lower()
    assert "content-type" in headers and "x-api-key" not in headers
    screenshot(browser, "detail", 1280, 1500)
    screenshot(browser, "detail", 390, 2600)

    browser.get(f"{shop.url}/dealpos/log/{shop.ids['rejected']}")
    errors = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=errors]").text
    assert "InvoiceID" in errors and "Amount" in errors


def test_replay_from_the_page_processes_a_failed_delivery(shop: Shop, browser: t.Any) -> None:
    browser.get(f"{shop.url}/dealpos/log/{shop.ids['until_replay']}")
    assert browser.find_element(By.CSS_SELECTOR, ".summary .status").text == "failed"
    click(browser, By.XPATH, "//button[starts-with(., 'Replay delivery')]")
    notice = browser.find_element(By.CSS_SELECTOR, "[role=status]").text
    assert notice == "Replayed just now: the delivery is now processed."
    assert browser.find_element(By.CSS_SELECTOR, ".summary .status").text == "processed"
    attempts = shop.app.extensions["posweb"].inbox.get(shop.ids["until_replay"]).attempts
    browser.refresh()  # the replay redirected here: a reload sends no form again
    assert not browser.find_elements(By.CSS_SELECTOR, "[role=status]")
    assert shop.app.extensions["posweb"].inbox.get(shop.ids["until_replay"]).attempts == attempts
    browser.get(f"{shop.url}/dealpos/log/?status=processed")
    assert f"#{shop.ids['until_replay']}" in [r["#"] for r in rows(browser)]


def test_a_post_without_the_csrf_token_is_refused(shop: Shop, browser: t.Any) -> None:
    """A form on another page posting to the replay URL (what a forged request
    does) is refused, and nothing is replayed."""
    target = f"{shop.url}/dealpos/log/{shop.ids['always']}/replay"
    forged = f'<form method="post" action="{target}"><button>Win a prize</button></form>'
    browser.get("data:text/html," + forged)
    click(browser, By.TAG_NAME, "button")
    assert browser.title.startswith("This form cannot be sent")
    assert "CSRF" in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert shop.app.extensions["posweb"].inbox.get(shop.ids["always"]).attempts == 1


def test_the_page_is_refused_without_access(shop: Shop, browser: t.Any) -> None:
    shop.app.config["DEBUG"] = False  # the shop admits loopback clients in debug mode only
    try:
        browser.get(f"{shop.url}/dealpos/log/{shop.ids['always']}")
        assert "403" in browser.title or "Forbidden" in browser.page_source
        assert "LedgerUnavailable" not in browser.page_source
    finally:
        shop.app.config["DEBUG"] = True


def test_replay_the_failed_ones_asks_first(shop: Shop, browser: t.Any) -> None:
    failed = get_state(shop.app).require_inbox().ids(Filter(["failed", "dead"]))
    assert shop.ids["always"] in failed  # and until_replay, unless replayed above
    browser.get(f"{shop.url}/dealpos/log/?event=payment_created")
    click(browser, By.PARTIAL_LINK_TEXT, "Replay the")
    noun = "delivery" if len(failed) == 1 else "deliveries"
    assert f"{len(failed)} failed {noun}" in browser.find_element(By.TAG_NAME, "main").text
    screenshot(browser, "confirm", 390, 900)
    click(browser, By.XPATH, f"//button[starts-with(., 'Replay {len(failed)}')]")
    outcome = browser.find_element(By.CSS_SELECTOR, "[role=status]").text
    assert outcome.startswith(f"{len(failed)} {noun} replayed")
    assert "1 now failed" in outcome  # the ledger refuses the one that always fails
    screenshot(browser, "replayed", 1280, 900)


def test_loyalty_answers_are_listed(shop: Shop, browser: t.Any) -> None:
    client = t.cast(PosWebClient, shop.app.test_client())
    assert client.call_loyalty("order_complete").status_code == 200
    browser.get(f"{shop.url}/dealpos/log/loyalty")
    cells = browser.find_elements(By.CSS_SELECTOR, "table.loyalty tbody td")
    assert [c.text for c in cells][:4] == [
        "Loyalty Point On Order Complete",
        "id:b7a41c0e-1e52-4f5a-8c1d-77c0f6a3e901",
        "answered",
        '{"reward": 68}',
    ]
    screenshot(browser, "loyalty", 390, 900)
