"""The review pages in a real browser: Debian's headless Chromium, driven by Selenium, reading
`triage web` run as a user runs it.

Search narrows the log, a decision page shows its exact prompt, a correction made through the form
is in `triage log --corrected`, the review queue advances with the keyboard, the stats page draws its
charts, and a log of hostile mail renders with no script run and no outside request made: hostile
mail points at a beacon (tests.support.browser.Beacon) that every test ends by finding untouched,
and DevTools' log of each page's requests shows that none went anywhere but the server. A failing
test leaves a screenshot of the page in tests.support.browser.SCREENSHOTS.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from tests.conftest import require
from tests.support import browser
from tests.support.inprocess import triage
from tests.support.web_log import PWNED, THREAD_ID, fill_hostile_log, fill_review_log, prompt_of
from triage.log.explain import explain
from triage.store.decisions import Store

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_triage_env")]


@pytest.fixture(scope="module")
def beacon() -> Iterator[browser.Beacon]:
    with browser.Beacon() as listening:
        yield listening


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    require(browser.available(), f"Chromium is not installed ({browser.CHROMIUM}, {browser.CHROMEDRIVER})")
    profile = browser.fresh_profile()
    try:
        with browser.chromium(profile) as opened:
            assert isinstance(opened, WebDriver)
            yield opened
    finally:
        browser.remove_profile(profile)


@pytest.fixture(autouse=True)
def beacon_untouched(
    request: pytest.FixtureRequest, driver: WebDriver, beacon: browser.Beacon
) -> Iterator[None]:
    """Every test: nothing reached the beacon; on failure, a screenshot of the page."""
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        shot = browser.screenshot(driver, request.node.name)
        print(f"{request.node.nodeid}: screenshot of the page in {shot}", file=sys.__stderr__)
    assert beacon.requests == []


@pytest.fixture
def served(store: Store, db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[browser.WebServer]:
    """`triage web` over the review log; TRIAGE_STORE__URL names the log for the command line here."""
    fill_review_log(store)
    monkeypatch.setenv("TRIAGE_STORE__URL", f"sqlite:///{db}")
    with browser.WebServer(db) as server:
        yield server


def rows(driver: WebDriver) -> list[int]:
    return [int(cell.text) for cell in driver.find_elements(By.CSS_SELECTOR, "table.log tbody td.num a")]


def current(driver: WebDriver) -> str | None:
    found = driver.find_elements(By.ID, "current")
    return found[0].get_attribute("data-decision") if found else None


def press(driver: WebDriver, key: str) -> None:
    driver.find_element(By.TAG_NAME, "body").send_keys(key)


def test_search_narrows_the_log(driver: WebDriver, served: browser.WebServer) -> None:
    driver.get(served.url + "/")
    assert rows(driver) == [6, 5, 4, 3, 2, 1]
    driver.find_element(By.NAME, "q").send_keys("walrus" + Keys.ENTER)
    browser.wait_until(
        lambda: "q=walrus" in driver.current_url and rows(driver) == [5, 4], "the search's rows"
    )
    driver.find_element(By.CSS_SELECTOR, 'select[name="status"] option[value="needs-review"]').click()
    driver.find_element(By.CSS_SELECTOR, "form.filters button").click()
    browser.wait_until(lambda: "status=needs-review" in driver.current_url, "the status filter")
    assert rows(driver) == [5, 4]


def test_a_decision_page_shows_its_exact_prompt(driver: WebDriver, served: browser.WebServer) -> None:
    driver.get(served.url + "/decisions/2")
    shown = driver.execute_script("return document.getElementById('prompt-text').textContent")
    assert shown == prompt_of(2)
    driver.find_element(By.LINK_TEXT, "prompt as plain text").click()
    browser.wait_until(lambda: driver.current_url.endswith("/decisions/2/prompt"), "the plain prompt")
    assert driver.execute_script("return document.body.textContent") == prompt_of(2)


def test_a_correction_made_through_the_form_is_in_the_corrected_log(
    driver: WebDriver, served: browser.WebServer, capsys: pytest.CaptureFixture[str]
) -> None:
    driver.get(served.url + "/decisions/3")
    form = driver.find_element(By.CSS_SELECTOR, "form.correct")
    form.find_element(By.CSS_SELECTOR, 'input[value="existing-thread"]').click()
    form.find_element(By.NAME, "thread_id").send_keys(THREAD_ID)
    form.find_element(By.NAME, "note").send_keys("the same export")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    browser.wait_until(
        lambda: driver.find_elements(By.CSS_SELECTOR, "table.corrections tbody tr"), "the recorded correction"
    )
    assert driver.current_url == served.url + "/decisions/3"
    logged = [json.loads(line) for line in triage(capsys, "log", "--corrected", "--json").out_lines]
    assert [(r["id"], r["corrected_decision"], r["corrected_thread_id"]) for r in logged] == [
        (3, "existing-thread", THREAD_ID)
    ]


def test_the_review_queue_advances_with_the_keyboard(
    driver: WebDriver, served: browser.WebServer, store: Store
) -> None:
    driver.get(served.url + "/review")
    assert current(driver) == "5"
    press(driver, "i")  # ignore
    browser.wait_until(lambda: current(driver) == "4", "the next decision in the queue")
    assert "Recorded a correction of decision 5" in driver.find_element(By.CSS_SELECTOR, ".done").text
    press(driver, "e")  # existing-thread: the thread id field takes the keys
    driver.switch_to.active_element.send_keys(THREAD_ID + Keys.ENTER)
    browser.wait_until(lambda: driver.find_elements(By.ID, "queue-empty"), "an empty queue")
    assert [(c["decision"], c["thread_id"]) for c in explain(store, 5)["corrections"]] == [("ignore", None)]
    assert [(c["decision"], c["thread_id"]) for c in explain(store, 4)["corrections"]] == [
        ("existing-thread", THREAD_ID)
    ]
    driver.get(served.url + "/review?all=1")
    assert current(driver) == "6"
    press(driver, "s")  # skip
    browser.wait_until(lambda: current(driver) == "5", "the decision after the skipped one")
    for after in ("4", "3"):
        press(driver, "s")
        browser.wait_until(lambda: current(driver) == after, f"decision {after}")  # noqa: B023
    press(driver, "a")  # accept decision 3's ignore
    browser.wait_until(lambda: current(driver) == "2", "decision 2 after accepting 3")
    assert [(c["kind"], c["decision"]) for c in explain(store, 3)["corrections"]] == [
        ("confirmation", "ignore")
    ]
    press(driver, "o")  # open
    browser.wait_until(lambda: driver.current_url == served.url + "/decisions/2", "decision 2's page")


def test_the_stats_page_draws_its_charts(driver: WebDriver, served: browser.WebServer) -> None:
    driver.get(served.url + "/stats")
    charts = driver.find_elements(By.CSS_SELECTOR, "figure.chart svg")
    assert len(charts) == 5
    for chart in charts:
        size = chart.size
        assert size["width"] > 300 and size["height"] > 40, size
    bars = driver.find_elements(By.CSS_SELECTOR, "figure.chart rect.bar")
    assert len(bars) >= 6 and all(bar.size["height"] > 0 for bar in bars)
    lines = driver.find_elements(By.CSS_SELECTOR, "figure.chart polyline.line")
    assert lines and all(line.size["width"] > 100 for line in lines)
    assert "6 decisions from" in driver.find_element(By.ID, "summary").text
    assert severe_messages(driver) == []


def severe_messages(driver: WebDriver) -> list[str]:
    """What the browser's console reported as errors (a CSP violation among them)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]  # type: ignore[attr-defined]


def _no_trace_of_script(driver: WebDriver, server: browser.WebServer, path: str) -> None:
    state: dict[str, Any] = driver.execute_script(
        f"""return {{
            pwned: typeof window.{PWNED} !== 'undefined',
            title: document.title,
            resources: performance.getEntriesByType('resource').map(e => e.name),
            links: Array.from(document.querySelectorAll('a[href]'), a => a.href),
            embedded: document.querySelectorAll('img, iframe, object, embed, video, audio, link[href*="tracker"], style, meta[http-equiv]').length,
            hidden: getComputedStyle(document.body).display,
        }}"""
    )
    assert not state["pwned"], path
    assert state["title"].endswith("· triage"), (path, state["title"])
    assert all(url.startswith(server.url + "/static/") for url in state["resources"]), (
        path,
        state["resources"],
    )
    assert all(url.startswith(server.url + "/") for url in state["links"]), (path, state["links"])
    assert state["embedded"] == 0 and state["hidden"] != "none", path
    try:
        alert = driver.switch_to.alert.text
    except NoAlertPresentException:
        alert = None
    assert alert is None, path


def test_hostile_mail_renders_with_no_script_run_and_no_outside_request(
    driver: WebDriver, store: Store, db: Path, beacon: browser.Beacon
) -> None:
    ids = fill_hostile_log(store, beacon.url)
    with browser.WebServer(db) as server:
        paths = ["/", "/review", "/review?all=1", "/stats", "/threads", f"/threads/{THREAD_ID}"]
        paths += [f"/decisions/{decision_id}" for decision_id in ids]
        driver.get_log("browser")  # forget what earlier pages reported
        browser.page_requests(driver)
        for path in paths:
            driver.get(server.url + path)
            _no_trace_of_script(driver, server, path)
            asked = browser.page_requests(driver)
            assert asked and all(url.startswith(server.url + "/") for url in asked), (path, asked)
        driver.get(f"{server.url}/decisions/{ids[0]}")
        text = driver.find_element(By.TAG_NAME, "body").text
        assert f"<script>window.{PWNED}=1;fetch('{beacon.url}/script')</script>" in text  # shown, as text
        assert f"javascript:window.{PWNED}=1" in text
        assert severe_messages(driver) == []  # escaped: not even a blocked attempt for the CSP to report
