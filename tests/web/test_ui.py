"""The demo UI in a real browser, against a real `wallet serve`: what a person can do with it.

One test per flow, each with many assertions (a browser test costs seconds). Each step saves a
screenshot under the test's tmp_path (NN-step.png). The README's pictures, docs/ui-*.png, are
some of them: `UI_SCREENSHOTS_DIR=docs .venv/bin/pytest -m browser tests/web/test_ui.py` writes
them there too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import io
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from playwright.sync_api import Browser, Locator, Page, Request, Route, ViewportSize, expect

from support import Server, balance, create_key, new_wallet, start_server, topup, wallet_command

pytestmark = pytest.mark.browser

TIMEOUT_MS = 10_000
# The page reads the wallet again every 5 s (REFRESH_INTERVAL_MS in app.js); a loaded machine
# gets the rest.
REFRESH_WAIT_MS = 20_000
DESKTOP = ViewportSize(width=1280, height=900)
PHONE = ViewportSize(width=390, height=844)
HISTORY_TOPUPS = 12
SQL_TIMEOUT_SECONDS = 30

expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def ui_database(create_database: Callable[[], str]) -> str:
    url = create_database()
    wallet_command("db", "seed", database_url=url)
    return url


@pytest.fixture(scope="module")
def demo_key(ui_database: str) -> str:
    return create_key(ui_database, "admin", name=f"ui-test-{uuid.uuid4().hex[:12]}")


def application_as_served(port: int) -> list[str]:
    """The application as `wallet serve` runs it (its factory, its HTTP protocol), without the
    command around it: `wallet serve` hands a demo key to the application only in embedded demo
    mode, and drops one inherited on an external database such as the suite's."""
    return [
        sys.executable,
        *("-m", "uvicorn", "wallet.api.app:create_app", "--factory"),
        *("--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--no-access-log"),
        *("--http", "wallet.api.protocol:LimitedHttpToolsProtocol"),
    ]


@pytest.fixture(scope="module")
def demo_server(
    ui_database: str, demo_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Embedded demo mode as the application sees it: the demo key in WALLET_DEMO_UI_KEY.
    tests/web/test_demo_mode.py checks that `wallet serve` on the embedded database sets it."""
    log_path = tmp_path_factory.mktemp("demo-server") / "server.log"
    environment = {"WALLET_DEMO_UI_KEY": demo_key}
    running = start_server(ui_database, log_path, env=environment, command=application_as_served)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def external_server(ui_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """No demo key: the page has to ask for one."""
    log_path = tmp_path_factory.mktemp("external-server") / "server.log"
    running = start_server(ui_database, log_path, env={"WALLET_DEMO_UI_KEY": ""})
    try:
        yield running
    finally:
        running.stop()


# Servers before `page` in the tests' arguments: Playwright's sync API runs an event loop in this
# thread while the browser is open, so the fixtures that call asyncio.run must come first.
@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on(
        "console",
        lambda message: errors.append(message.text) if "Content Security Policy" in message.text else None,
    )
    try:
        yield opened
    finally:
        context.close()
    assert not errors, f"script errors or blocked resources on the page: {errors}"


class Steps:
    """Numbered screenshots of one test."""

    def __init__(self, page: Page, directory: Path) -> None:
        self.page, self.directory, self.count = page, directory, 0

    def shot(self, name: str, full_page: bool = True) -> Path:
        self.count += 1
        path = self.directory / f"{self.count:02d}-{name}.png"
        self.page.screenshot(path=path, full_page=full_page)
        return path

    def element(self, locator: Locator, name: str) -> Path:
        """One element of the page, whole."""
        path = self.directory / f"{name}.png"
        locator.screenshot(path=path)
        return path


def publish(screenshot: Path, name: str) -> None:
    """Copies a screenshot to UI_SCREENSHOTS_DIR/ui-NAME.png when that is set (see above)."""
    directory = os.environ.get("UI_SCREENSHOTS_DIR")
    if directory:
        shutil.copyfile(screenshot, Path(directory) / f"ui-{name}.png")


def sql(database_url: str, query: str, *args: Any) -> None:
    """One statement, run in a thread of its own: Playwright's event loop owns this one."""

    async def run() -> None:
        connection = await asyncpg.connect(database_url, timeout=10)
        try:
            await connection.execute(query, *args)
        finally:
            await connection.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, run()).result(timeout=SQL_TIMEOUT_SECONDS)


def money_form(page: Page, kind: str) -> Locator:
    """The form of one kind of movement, its tab chosen."""
    page.locator(f"#tab-{kind}").click()
    form = page.locator(f"#form-{kind}")
    expect(form).to_be_visible()
    return form


def send(form: Locator, amount: str, **fields: str) -> None:
    for name, value in fields.items():
        form.locator(f"input[name={name}]").fill(value)
    form.get_by_label("Amount", exact=True).fill(amount)
    form.locator("button.send").click()


def resend(form: Locator) -> None:
    form.get_by_role("button", name="Send again with the same key").click()


def requests_to(page: Page, path_part: str, method: str | None = None) -> list[Request]:
    """Records the requests the page sends to URLs containing `path_part`."""
    sent: list[Request] = []

    def record(request: Request) -> None:
        if path_part in request.url and method in (None, request.method):
            sent.append(request)

    page.on("request", record)
    return sent


def open_new_wallet(page: Page, server: Server, owner: str) -> str:
    """Opens the page, finds `owner` (who has no wallets), creates a GOLD wallet; its id."""
    page.goto(server.base_url + "/")
    expect(page.locator("#session-status")).to_contain_text("demo key")
    expect(page.locator("#wallet-card")).to_be_visible()  # the default owner's wallet
    page.get_by_label("Owner or wallet id", exact=True).fill(owner)
    page.get_by_role("button", name="Find", exact=True).click()
    expect(page.locator("#wallet-result")).to_contain_text(f"{owner} has no wallets yet")
    page.get_by_label(f"Create a wallet for {owner} in").select_option("GOLD")
    page.get_by_role("button", name="Create wallet").click()
    expect(page.locator("#wallet-result")).to_contain_text(f"Created a GOLD wallet for {owner}.")
    expect(page.locator("#balance")).to_have_text("0")
    wallet_id = page.locator("#wallet-id code").inner_text()
    expect(page).to_have_url(re.compile(f"wallet={wallet_id}"))
    return wallet_id


def clipboard(page: Page) -> str:
    text: str = page.evaluate("navigator.clipboard.readText()")
    return text


def test_a_person_moves_money_sees_declines_replays_and_pages_through_history(
    demo_server: Server, demo_key: str, page: Page, tmp_path: Path
) -> None:
    steps = Steps(page, tmp_path)
    shown_balance = page.locator("#balance")
    verify_calls = requests_to(page, "/v1/ledger/verify")
    owner = f"ui-{uuid.uuid4().hex[:10]}"
    wallet_id = open_new_wallet(page, demo_server, owner)
    steps.shot("wallet-created")

    # Amounts in the format the page prints them.
    top_up = money_form(page, "topup")
    first_key = top_up.locator(".key").inner_text()
    send(top_up, "1,000", reference="order-17")
    expect(top_up.locator(".result")).to_contain_text("Topped up 1,000 GOLD.")
    expect(top_up.locator(".result .balance-then")).to_contain_text("Balance right after this top-up (then")
    expect(top_up.locator(".result .balance-then")).to_contain_text("1,000")
    expect(shown_balance).to_have_text("1,000")
    assert top_up.locator(".key").inner_text() == first_key, "the key is kept after a send"
    expect(page.locator("#wallet-result")).to_be_empty()  # the earlier action's message is gone
    steps.shot("topped-up")

    # The replay, and the exact exchange behind it (item 5), with a curl line that works.
    resend(top_up)
    expect(top_up.locator(".result")).to_contain_text("Replayed")
    expect(top_up.locator(".result")).to_contain_text("No money moved this time.")
    expect(shown_balance).to_have_text("1,000")
    exchange = top_up.locator(".result details.exchange")
    exchange.locator("summary").click()
    expect(exchange.locator("summary")).to_contain_text(
        f"POST /v1/wallets/{wallet_id}/topup → 201 Created (replayed)"
    )
    expect(exchange.locator("pre.request")).to_contain_text(f"Idempotency-Key: {first_key}")
    expect(exchange.locator("pre.request")).to_contain_text("Authorization: Bearer ••••••••")
    expect(exchange.locator("pre.request")).to_contain_text('{"amount":1000,"reference":"order-17"}')
    expect(exchange.locator("pre.response")).to_contain_text("idempotent-replayed: true")
    exchange.get_by_role("button", name="Copy the curl command").click()
    curl = clipboard(page)
    assert "$KEY" in curl and demo_key not in curl, curl
    replayed_by_curl = subprocess.run(
        ["bash", "-c", curl],
        env={**os.environ, "KEY": demo_key},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "idempotent-replayed: true" in replayed_by_curl.lower(), replayed_by_curl
    assert exchange.locator("pre.response").inner_text().endswith(replayed_by_curl.split("\n\n", 1)[1])
    expect(page.locator("#calls-list li").first).to_contain_text(f"POST /v1/wallets/{wallet_id}/topup")
    assert demo_key not in page.content(), "the page shows its API key"
    publish(steps.element(page.locator("#calls-panel"), "calls-panel"), "api-calls")
    steps.shot("top-up-replayed")

    spend = money_form(page, "spend")
    send(spend, "5000")
    expect(spend.locator(".result")).to_contain_text("The wallet does not hold enough for this.")
    expect(spend.locator(".result")).to_contain_text(
        f"The service says: Wallet {wallet_id} has 1000 available, less than 5000."
    )
    expect(spend.locator(".result")).to_contain_text("code insufficient_funds · HTTP 409")
    expect(top_up.locator(".result")).to_be_empty()  # one action's messages at a time
    expect(shown_balance).to_have_text("1,000")
    resend(spend)
    expect(spend.locator(".result")).to_contain_text("Replayed")
    expect(spend.locator(".result")).to_contain_text("Idempotent-Replayed: true")
    expect(shown_balance).to_have_text("1,000")
    steps.shot("spend-decline-replayed")
    page.evaluate("window.scrollTo(0, 0)")
    publish(steps.shot("wallet-view", full_page=False), "wallet")

    spend_posts = requests_to(page, "/spend", "POST")
    key_before_edit = spend.locator(".key").inner_text()
    for typed in ("10.5", "1,00", "-5"):
        send(spend, typed)
        expect(spend.locator(".result")).to_contain_text(
            "Enter a whole number from 1 to 1,000,000,000,000,000"
        )
        expect(spend.get_by_label("Amount", exact=True)).to_have_attribute("aria-invalid", "true")
    assert spend.locator(".key").inner_text() != key_before_edit, "editing the amount makes a new key"
    assert spend_posts == [], "an invalid amount is not sent"
    expect(spend.get_by_role("button", name="Send again with the same key")).to_be_disabled()

    bonus = money_form(page, "bonus")
    bonus_posts = requests_to(page, "/bonus", "POST")
    bonus.get_by_label("Amount", exact=True).fill("7")
    bonus.locator("button.send").dblclick()
    expect(bonus.locator(".result")).to_contain_text("Granted a bonus of 7 GOLD.")
    expect(shown_balance).to_have_text("1,007")
    assert len(bonus_posts) == 1, f"a double click sent {len(bonus_posts)} requests"

    # A recipient without a wallet gets one from the transfer form; the sender stays chosen.
    transfer = money_form(page, "transfer")
    send(transfer, "40", recipient=wallet_id)
    expect(transfer.locator(".result")).to_contain_text("code same_wallet · HTTP 422")
    said = transfer.locator(".result").inner_text()
    assert said.count("A transfer needs two different wallets") == 1, (
        f"the detail repeats the sentence: {said}"
    )
    send(transfer, "40", recipient=str(uuid.uuid4()))
    expect(transfer.locator(".result")).to_contain_text("There is no wallet with that id.")
    expect(transfer.locator(".result")).to_contain_text("code wallet_not_found · HTTP 404")
    recipient = f"ui-{uuid.uuid4().hex[:10]}"
    send(transfer, "40", recipient=recipient)
    expect(transfer.locator(".result")).to_contain_text(f"{recipient} has no GOLD wallet yet.")
    transfer.get_by_role("button", name=f"Create a GOLD wallet for {recipient}").click()
    expect(transfer.locator(".result")).to_contain_text(
        f"Created a GOLD wallet for {recipient}. Press Transfer"
    )
    expect(page.locator("#wallet-owner")).to_have_text(owner)
    expect(page).to_have_url(re.compile(f"wallet={wallet_id}"))
    transfer.locator("button.send").click()
    expect(transfer.locator(".result")).to_contain_text(f"Transferred 40 GOLD to {recipient}.")
    expect(shown_balance).to_have_text("967")
    steps.shot("transferred")

    with demo_server.client() as client:
        assert balance(client, wallet_id) == 967
        recipient_wallet = client.get("/v1/wallets", params={"owner_id": recipient}).json()["data"][0]["id"]
        assert balance(client, recipient_wallet) == 40
        for _ in range(HISTORY_TOPUPS):
            assert topup(client, wallet_id, 1).status_code == 201

    history = page.locator("#history-list > li")
    page_label = page.locator("#history-page")
    page.get_by_label("Per page", exact=True).select_option("5")
    expect(history).to_have_count(5)
    expect(page_label).to_contain_text("Page 1: 5 transactions;")
    expect(history.first).to_contain_text("Top up")
    expect(history.first).to_contain_text("+1 GOLD")
    expect(history.first).to_contain_text("balance after 979")
    older = page.get_by_role("button", name="Older")
    older.click()
    expect(page_label).to_contain_text("Page 2: 5 transactions;")
    older.click()
    # 12 top-ups of 1, the transfer, the bonus and the first top-up: 15 transactions in all.
    expect(page_label).to_contain_text("Page 3: 5 transactions, no older ones;")
    expect(older).to_be_disabled()
    expect(page.get_by_role("button", name="Newer")).to_be_focused()  # not lost to <body>
    oldest = history.last
    expect(oldest).to_contain_text("+1,000 GOLD")
    expect(oldest).to_contain_text("from treasury:GOLD")
    expect(oldest).to_contain_text("reference order-17")
    expect(oldest.locator("tbody tr")).to_have_count(2)
    expect(oldest.locator("tbody tr").first).to_contain_text("— (system)")
    expect(oldest.locator("tbody tr").last).to_contain_text("this wallet")
    transfer_item = history.nth(2)
    expect(transfer_item).to_contain_text("Transfer")
    expect(transfer_item).to_contain_text(f"to {recipient}'s wallet")
    expect(transfer_item).not_to_contain_text(recipient_wallet)
    expect(transfer_item).to_contain_text("balance after 967")
    expect(transfer_item.locator("tbody tr").last).to_contain_text("— (not shown)")  # not their balance
    publish(steps.element(page.locator("#history-panel"), "history-panel"), "history")
    steps.shot("history-page-3")
    page.get_by_role("button", name="Newer").click()
    expect(page_label).to_contain_text("Page 2: 5 transactions;")

    # On a phone: one column, the money forms right under the balance (it was 1,500 px above the
    # spend button): with the balance at the top of the screen, the spend button is on it too.
    page.set_viewport_size(PHONE)
    page.reload()
    expect(shown_balance).to_have_text("979")
    expect(page_label).to_contain_text("Page 2: 5 transactions;")  # the URL kept the page
    spend_button = money_form(page, "spend").locator("button.send")
    page.evaluate("document.getElementById('balance').scrollIntoView({block: 'start'})")
    bottom = page.evaluate("document.querySelector('#form-spend button.send').getBoundingClientRect().bottom")
    assert bottom <= PHONE["height"], f"the spend button ends {bottom} px below the balance's screen top"
    expect(spend_button).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "no sideways scroll"
    page.evaluate("window.scrollTo(0, 0)")
    steps.shot("phone-width-top", full_page=False)

    assert verify_calls == [], "the ledger-wide verify ran without being asked"
    assert demo_key not in demo_server.log_path.read_text(), "the demo key must never be logged"


def test_a_lost_answer_says_so_and_the_retry_after_a_reload_replays_it_once(
    demo_server: Server, page: Page, tmp_path: Path
) -> None:
    steps = Steps(page, tmp_path)
    owner = f"ui-{uuid.uuid4().hex[:10]}"
    wallet_id = open_new_wallet(page, demo_server, owner)
    top_up_posts = requests_to(page, "/topup", "POST")
    top_up = money_form(page, "topup")
    key = top_up.locator(".key").inner_text()
    note = top_up.locator(".pending-note")

    # The request reaches the service and is applied; its answer never reaches the page.
    top_up.get_by_label("Lose the answer of the next send").check()
    send(top_up, "250", reference="lost-answer")
    expect(note).to_contain_text("The answer was lost: this top-up may or may not have happened.")
    expect(note).to_contain_text("Sending again with the same key is safe")
    expect(note).to_contain_text(key)
    expect(top_up).not_to_contain_text("Could not reach the service")
    expect(top_up.locator(".result details.exchange summary")).to_contain_text("answer lost")
    resend_button = top_up.get_by_role("button", name="Send again with the same key")
    expect(resend_button).to_be_focused()
    expect(resend_button).not_to_have_class(re.compile(r"\bsecondary\b"))  # the obvious next step
    expect(top_up.get_by_label("Amount", exact=True)).not_to_be_editable()
    expect(page.get_by_role("tab", name="Top up · answer lost")).to_be_visible()
    expect(top_up.get_by_label("Lose the answer of the next send")).not_to_be_checked()
    # The card reads the wallet again after every send: the money did move.
    expect(page.locator("#balance")).to_have_text("250")
    steps.shot("answer-lost")

    # A reload keeps the pending request (this tab's sessionStorage) and the place (the URL).
    page.reload()
    top_up = money_form(page, "topup")
    note = top_up.locator(".pending-note")
    expect(note).to_contain_text("The answer was lost: this top-up may or may not have happened.")
    expect(note).to_contain_text("The page was reloaded since")
    expect(top_up.locator(".key")).to_have_text(key)
    expect(top_up.get_by_label("Amount", exact=True)).to_have_value("250")
    expect(top_up.get_by_label("Reference (optional)", exact=True)).to_have_value("lost-answer")
    page.evaluate("window.scrollTo(0, 0)")
    publish(steps.shot("answer-lost-after-reload", full_page=False), "lost-answer")

    with page.expect_response(lambda response: response.url.endswith("/topup")) as answer:
        resend(top_up)
    assert answer.value.status == 201
    assert answer.value.headers.get("idempotent-replayed") == "true"
    expect(top_up.locator(".result")).to_contain_text("Replayed")
    expect(top_up.locator(".result")).to_contain_text("No money moved this time.")
    expect(top_up.locator(".result")).to_contain_text("Topped up 250 GOLD.")
    expect(note).to_be_hidden()
    expect(page.locator("#tab-topup .tab-flag")).to_be_hidden()
    expect(page.locator("#balance")).to_have_text("250")
    steps.shot("lost-answer-replayed")

    assert len(top_up_posts) == 2, [request.url for request in top_up_posts]
    lost, retried = top_up_posts
    assert lost.headers["idempotency-key"] == retried.headers["idempotency-key"] == key
    assert lost.post_data == retried.post_data == '{"amount":250,"reference":"lost-answer"}'
    assert lost.url == retried.url
    assert (
        page.evaluate("Object.keys(sessionStorage).filter((k) => k.startsWith('wallet-demo-pending:'))") == []
    )
    with demo_server.client() as client:
        assert balance(client, wallet_id) == 250
        history = client.get(f"/v1/wallets/{wallet_id}/transactions").json()["data"]
        assert [(item["type"], item["amount"]) for item in history] == [("topup", 250)]

    # A connection that fails before the service sees the request: the same words (the page
    # cannot tell the two apart), and the retry with the same key applies it, not a replay.
    spend = money_form(page, "spend")
    page.route("**/spend", lambda route: route.abort("connectionreset"))
    send(spend, "50")
    expect(spend.locator(".pending-note")).to_contain_text("this spend may or may not have happened")
    page.unroute("**/spend")
    with page.expect_response(lambda response: response.url.endswith("/spend")) as answer:
        resend(spend)
    assert answer.value.status == 201
    assert answer.value.headers.get("idempotent-replayed") is None
    expect(spend.locator(".result")).to_contain_text("Spent 50 GOLD.")
    expect(spend.locator(".result")).not_to_contain_text("Replayed")
    expect(page.locator("#balance")).to_have_text("200")


def test_the_page_stays_fresh_finds_wallets_by_id_and_keeps_its_place_in_the_url(
    demo_server: Server, page: Page, browser: Browser, tmp_path: Path
) -> None:
    steps = Steps(page, tmp_path)
    verify_calls = requests_to(page, "/v1/ledger/verify")
    shown_balance = page.locator("#balance")
    history = page.locator("#history-list > li")
    owner = f"ui-{uuid.uuid4().hex[:10]}"
    wallet_id = open_new_wallet(page, demo_server, owner)
    top_up = money_form(page, "topup")
    send(top_up, "100")
    expect(shown_balance).to_have_text("100")
    read_at = page.locator("#balance-as-of time").get_attribute("datetime")

    # A game server spends through the API: the card, the list and the history follow by
    # themselves, each saying when it was read.
    with demo_server.client() as client:
        spent = client.post(
            f"/v1/wallets/{wallet_id}/spend",
            json={"amount": 30},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert spent.status_code == 201, spent.text
    expect(shown_balance).to_have_text("70", timeout=REFRESH_WAIT_MS)
    assert page.locator("#balance-as-of time").get_attribute("datetime") != read_at
    expect(page.locator("#wallet-list")).to_contain_text("GOLD: 70")
    expect(history.first).to_contain_text("Spend")
    expect(history.first).to_contain_text("−30 GOLD")
    expect(page.locator("#history-page")).to_contain_text("as of")

    # A late replay: the stored answer's balance is the balance then, next to the balance now.
    resend(top_up)
    expect(top_up.locator(".result")).to_contain_text("Replayed")
    expect(top_up.locator(".result .balance-then")).to_contain_text("Balance right after this top-up (then")
    expect(top_up.locator(".result .balance-then")).to_contain_text("100")
    expect(top_up.locator(".result .balance-now")).to_be_visible()
    expect(top_up.locator(".result .balance-now")).to_contain_text("Balance now: 70")
    steps.shot("late-replay")

    # A wallet id pasted into the lookup opens that wallet and its owner, instead of offering to
    # create a wallet for an owner named like a UUID.
    other_owner = f"ui-{uuid.uuid4().hex[:10]}"
    with demo_server.client() as client:
        other_wallet = new_wallet(client, "GOLD", owner_id=other_owner)
    lookup = page.get_by_label("Owner or wallet id", exact=True)
    lookup.fill(other_wallet)
    page.get_by_role("button", name="Find", exact=True).click()
    expect(page.locator("#wallet-owner")).to_have_text(other_owner)
    expect(lookup).to_have_value(other_owner)
    expect(page.locator("#wallets-heading")).to_have_text(f"Wallets of {other_owner}")
    expect(page.locator("#wallet-result")).to_be_empty()
    expect(page).to_have_url(re.compile(f"wallet={other_wallet}"))
    page.locator("#wallet-id").get_by_role("button", name="Copy the wallet id").click()
    assert clipboard(page) == other_wallet
    unknown = str(uuid.uuid4())
    lookup.fill(unknown)
    page.get_by_role("button", name="Find", exact=True).click()
    expect(page.locator("#wallet-result")).to_contain_text(f"No wallet has the id {unknown}")
    expect(page.locator("#wallet-card")).to_be_hidden()

    # Back walks the places visited; the URL holds the owner, the wallet and the history page.
    page.go_back()
    expect(page.locator("#wallet-owner")).to_have_text(other_owner)
    page.go_back()
    expect(page.locator("#wallet-owner")).to_have_text(owner)
    expect(shown_balance).to_have_text("70")
    with demo_server.client() as client:
        for _ in range(6):
            assert topup(client, wallet_id, 1).status_code == 201
    page.get_by_label("Per page", exact=True).select_option("5")
    expect(page).to_have_url(re.compile("limit=5"))
    page.get_by_role("button", name="Older").click()
    page_label = page.locator("#history-page")
    expect(page_label).to_contain_text("Page 2: 3 transactions, no older ones;")
    expect(page).to_have_url(re.compile("pages="))
    page_two_first = history.first.locator("code").first.inner_text()
    steps.shot("history-page-2")

    page.reload()
    expect(page_label).to_contain_text("Page 2: 3 transactions, no older ones;")
    expect(history.first.locator("code").first).to_have_text(page_two_first)
    shared = browser.new_context(viewport=DESKTOP)
    try:
        shared_page = shared.new_page()
        shared_page.goto(page.url)
        expect(shared_page.locator("#wallet-owner")).to_have_text(owner)
        expect(shared_page.locator("#history-page")).to_contain_text("Page 2: 3 transactions")
        expect(shared_page.locator("#history-list > li").first.locator("code").first).to_have_text(
            page_two_first
        )
        shared_page.get_by_role("button", name="Newer").click()
        expect(shared_page.locator("#history-page")).to_contain_text("Page 1: 5 transactions;")
    finally:
        shared.close()
    page.go_back()
    expect(page_label).to_contain_text("Page 1: 5 transactions;")
    expect(page).not_to_have_url(re.compile("pages="))

    assert verify_calls == [], "the ledger-wide verify ran without being asked"


def held_routes(page: Page, pattern: str) -> list[Route]:
    """Holds the page's requests matching `pattern` (they reach the server once continued)."""
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route(pattern, hold)
    return held


def wait_until_held(page: Page, held: list[Route]) -> Route:
    deadline_ms, waited_ms = TIMEOUT_MS, 0
    while not held and waited_ms < deadline_ms:
        page.wait_for_timeout(50)  # lets Playwright deliver the route; the loop waits on `held`
        waited_ms += 50
    assert held, "the page did not send the request"
    return held.pop()


def test_ops_checks_the_ledger_on_demand_and_sees_which_account_breaks_which_invariant(
    demo_server: Server, ui_database: str, page: Page, tmp_path: Path
) -> None:
    steps = Steps(page, tmp_path)
    owner = f"ops-{uuid.uuid4().hex[:10]}"
    with demo_server.client() as client:
        wallet_id = new_wallet(client, "GOLD", owner_id=owner)
        assert topup(client, wallet_id, 10).status_code == 201
    page.goto(demo_server.base_url + "/")
    panel = page.locator("#health-panel")
    invariants = page.locator("#invariants > li")
    expect(invariants).to_have_count(8)
    expect(invariants.nth(0)).to_contain_text("Every transaction's entries balance")
    expect(invariants.nth(3)).to_contain_text("For each asset, the balances of all accounts")
    expect(invariants.nth(4)).to_contain_text("held = the sum of its pending, unexpired holds")
    expect(invariants.nth(7)).to_contain_text("one transaction.posted per transaction")
    expect(page.locator("#health-checked")).to_have_text("Not checked yet.")
    check = page.get_by_role("button", name="Check now")

    # "Check now" shows that it is working until verify answers.
    held = held_routes(page, "**/v1/ledger/verify")
    check.click()
    expect(page.locator("#health-progress")).to_be_visible()
    expect(page.locator("#health-progress")).to_contain_text("Checking the whole ledger…")
    expect(check).to_be_disabled()
    steps.shot("health-checking")
    wait_until_held(page, held).continue_()
    expect(page.locator("#health-verify")).to_contain_text("Ledger OK: every invariant holds.")
    expect(page.locator("#health-progress")).to_be_hidden()
    expect(check).to_be_enabled()
    expect(page.locator("#health-checked")).to_contain_text("Last checked at")
    for number in range(8):
        expect(invariants.nth(number)).to_contain_text("holds ✓")
    expect(page.locator("#health-balances tbody tr").last).to_contain_text("0 ✓")
    page.unroute("**/v1/ledger/verify")

    sql(ui_database, "UPDATE account SET balance = balance + 1 WHERE id = $1", uuid.UUID(wallet_id))
    try:
        check.click()
        report = page.locator("#health-verify")
        # Invariants 2 and 4, and the bookkeeping check that a statement closes at the balance.
        expect(report).to_contain_text("Ledger NOT OK: 3 problems.")
        expect(page.locator("#invariants > li[data-invariant='2']")).to_contain_text("broken: 1 problem ✗")
        expect(page.locator("#invariants > li[data-invariant='4']")).to_contain_text("broken: 1 problem ✗")
        expect(page.locator("#invariants > li[data-invariant='1']")).to_contain_text("holds ✓")
        expect(report.locator("li.problem").first).to_contain_text(
            f"Invariant 2: account {owner}'s GOLD wallet — user account"
        )
        expect(report.locator("li.problem").nth(1)).to_contain_text(
            "Invariant 4: asset GOLD — balances of all GOLD"
        )
        expect(report.locator("li.problem").nth(2)).to_contain_text(
            f"Check statements: the ledger — wallet {wallet_id}: "
            "a statement until now closes at 10, its balance is 11"
        )
        expect(page.locator("#health-balances tbody tr").last).to_contain_text("1 ✗")
        publish(steps.element(panel, "health-panel"), "health")
        steps.shot("health-problems")
        report.get_by_role("link", name=f"{owner}'s GOLD wallet").click()
        expect(page.locator("#wallet-owner")).to_have_text(owner)
        expect(page.locator("#balance")).to_have_text("11")
        expect(page).to_have_url(re.compile(f"wallet={wallet_id}"))
    finally:
        sql(ui_database, "UPDATE account SET balance = balance - 1 WHERE id = $1", uuid.UUID(wallet_id))
    check.click()
    expect(page.locator("#health-verify")).to_contain_text("Ledger OK: every invariant holds.")


def test_without_a_demo_key_the_page_asks_for_one_and_forgets_it_on_request(
    external_server: Server, ui_database: str, page: Page, tmp_path: Path
) -> None:
    steps = Steps(page, tmp_path)
    page.goto(external_server.base_url + "/")
    key_field = page.get_by_label("API key", exact=True)
    expect(key_field).to_be_visible()
    expect(key_field).to_have_attribute("type", "password")
    expect(page.locator("#workspace")).to_be_hidden()
    steps.shot("asks-for-a-key")

    key_field.fill("wk_this-is-not-a-key")
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#sign-in-result")).to_contain_text("The API key is unknown or revoked.")
    expect(page.locator("#sign-in-result")).to_contain_text("code unauthenticated · HTTP 401")
    expect(page.locator("#workspace")).to_be_hidden()
    steps.shot("wrong-key")

    key_field.fill(external_server.admin_key)
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#session-status")).to_contain_text("Signed in with your API key")
    expect(page.locator("#wallet-card")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('wallet-demo-api-key')") == external_server.admin_key
    assert external_server.admin_key not in page.url
    assert external_server.admin_key not in page.content()
    steps.shot("signed-in")

    page.reload()
    expect(page.locator("#wallet-card")).to_be_visible()
    expect(page.locator("#sign-in")).to_be_hidden()

    page.get_by_role("button", name="Forget key").click()
    expect(key_field).to_be_visible()
    expect(key_field).to_be_focused()
    expect(page.locator("#workspace")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('wallet-demo-api-key')") is None
    steps.shot("key-forgotten")

    # A key without the admin scope moves money but cannot read the event feed: the panel says so.
    key_field.fill(create_key(ui_database, "wallets:read", "wallets:write"))
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#wallet-card")).to_be_visible()
    expect(page.locator("#events-status")).to_contain_text("needs an API key with the admin scope")
    expect(page.locator("#events-list > li")).to_have_count(0)


# Holds, reversals, expiring credits, statements and the event feed (API.md, Additions v1.1).


def open_wallet(page: Page, server: Server, wallet_id: str) -> None:
    """Opens the page on one wallet, as a shared link would."""
    page.goto(f"{server.base_url}/?wallet={wallet_id}")
    expect(page.locator("#wallet-id code")).to_have_text(wallet_id)


def card_fact(page: Page, name: str) -> Locator:
    """One fact of the wallet card: held, available, next-expiry."""
    return page.locator(f"#wallet-{name}")


def test_a_hold_is_placed_captured_in_part_voided_and_counts_down_to_expired(
    demo_server: Server, page: Page, tmp_path: Path
) -> None:
    steps = Steps(page, tmp_path)
    with demo_server.client() as client:
        wallet_id = new_wallet(client, "GOLD", owner_id=f"ui-{uuid.uuid4().hex[:10]}")
        assert topup(client, wallet_id, 100).status_code == 201
    open_wallet(page, demo_server, wallet_id)
    expect(card_fact(page, "held")).to_have_text("0")
    expect(card_fact(page, "available")).to_have_text("100")
    panel = page.locator("#holds-panel")
    place = page.locator("#form-hold")
    holds = page.locator("#holds-list > li")
    expect(holds).to_have_text(["No holds yet."])

    # Placing: the key is shown; the hold lowers available, not the balance.
    key = place.locator(".key").inner_text()
    send(place, "30", expires_in="600", reference="order-9")
    expect(place.locator(".result")).to_contain_text("Placed a hold of 30 GOLD.")
    expect(card_fact(page, "held")).to_have_text("30")
    expect(card_fact(page, "available")).to_have_text("70")
    expect(page.locator("#balance")).to_have_text("100")
    first = holds.first
    expect(first).to_contain_text("Pending")
    expect(first).to_contain_text("reference order-9")
    expect(first.locator(".countdown")).to_contain_text(re.compile(r"expires in (9|10) min"))
    assert place.locator(".key").inner_text() == key
    resend(place)
    expect(place.locator(".result")).to_contain_text("Replayed")
    expect(place.locator(".result")).to_contain_text("No second hold was placed.")
    expect(holds).to_have_count(1)

    # Capturing part of it: 20 spent, the other 10 released.
    first.get_by_role("button", name="Capture hold of 30 GOLD").click()
    capture = page.locator("#form-capture")
    expect(page.locator("#hold-action-title")).to_contain_text("Capture hold")
    amount = capture.get_by_label("Amount to capture", exact=True)
    expect(amount).to_have_value("30")
    expect(amount).to_be_focused()
    amount.fill("20")
    capture.locator("button.send").click()
    expect(capture.locator(".result")).to_contain_text(
        "Captured 20 GOLD of the hold (the other 10 released)."
    )
    expect(page.locator("#balance")).to_have_text("80")
    expect(card_fact(page, "held")).to_have_text("0")
    expect(card_fact(page, "available")).to_have_text("80")
    expect(first).to_contain_text("Captured")
    expect(first).to_contain_text("captured 20, released 10")
    expect(first.get_by_role("button", name=re.compile("Capture"))).to_have_count(0)
    steps.shot("hold-captured")

    # A second capture of the same hold with a new key: the service says it is not pending.
    capture.get_by_role("button", name="New key").click()
    capture.locator("button.send").click()
    expect(capture.locator(".result")).to_contain_text("The hold is no longer pending")
    expect(capture.locator(".result")).to_contain_text("code hold_not_pending · HTTP 409")
    expect(page.locator("#balance")).to_have_text("80")

    # Voiding another, its answer lost: the retry with the same key replays, nothing moves twice.
    send(place, "15")
    expect(card_fact(page, "available")).to_have_text("65")
    holds.first.get_by_role("button", name="Void hold of 15 GOLD").click()
    void = page.locator("#form-void")
    void_key = void.locator(".key").inner_text()
    void.get_by_label("Lose the answer of the next send").check()
    void.locator("button.send").click()
    expect(void.locator(".pending-note")).to_contain_text("this void may or may not have happened")
    expect(card_fact(page, "available")).to_have_text("80")
    page.reload()
    void = page.locator("#form-void")
    expect(void).to_be_visible()  # the lost request keeps the form open after the reload
    expect(void.locator(".key")).to_have_text(void_key)
    expect(void.locator(".pending-note")).to_contain_text("The page was reloaded since")
    with page.expect_response(lambda response: response.url.endswith("/void")) as answer:
        resend(void)
    assert answer.value.status == 200
    assert answer.value.headers.get("idempotent-replayed") == "true"
    expect(void.locator(".result")).to_contain_text("Voided the hold: 15 GOLD available again.")
    expect(void.locator(".result")).to_contain_text("Replayed")
    expect(holds.first).to_contain_text("Voided")
    page.locator("#hold-status").select_option("captured")
    expect(holds).to_have_count(1)
    expect(holds.first).to_contain_text("captured 20, released 10")
    page.locator("#hold-status").select_option("")

    # A hold of 2 s counts down and reads "expired" by itself: the list is not read again for it.
    send(place, "5", expires_in="2")
    expect(card_fact(page, "available")).to_have_text("75")
    expiring = holds.first
    expect(expiring.locator(".countdown")).to_have_text(re.compile(r"expires in [12] s"))
    expiring.get_by_role("button", name="Capture hold of 5 GOLD").click()
    expect(capture.locator(".context .countdown")).to_have_text(re.compile(r"expires in [12] s"))
    holds_list = re.compile(r"/holds\?")
    page.route(holds_list, lambda route: route.abort())
    expect(expiring.locator(".status")).to_have_text("Expired", timeout=5_000)
    expect(expiring.locator(".countdown")).to_have_count(0)
    expect(expiring.get_by_role("button", name="Capture hold of 5 GOLD")).to_have_count(0)
    page.unroute(holds_list)
    # The capture form still open for it: the service refuses it, and moves nothing.
    expect(capture.locator(".context .countdown")).to_have_text("expired")
    capture.locator("button.send").click()
    expect(capture.locator(".result")).to_contain_text("code hold_not_pending · HTTP 409")
    # Past its expiry it frees `available` at once (the card is read again when it expires).
    expect(card_fact(page, "available")).to_have_text("80")
    steps.shot("hold-expired")
    publish(steps.element(panel, "holds-panel"), "holds")
    with demo_server.client() as client:
        assert balance(client, wallet_id) == 80
        listed = client.get(f"/v1/wallets/{wallet_id}/holds").json()["data"]
        assert [hold["status"] for hold in listed] == ["expired", "voided", "captured"]


def test_a_history_row_is_reversed_with_what_is_left_prefilled_and_moves_the_balance_once(
    demo_server: Server, page: Page, tmp_path: Path
) -> None:
    steps = Steps(page, tmp_path)
    with demo_server.client() as client:
        wallet_id = new_wallet(client, "GOLD", owner_id=f"ui-{uuid.uuid4().hex[:10]}")
        assert topup(client, wallet_id, 100).status_code == 201
        spent = client.post(
            f"/v1/wallets/{wallet_id}/spend",
            json={"amount": 60, "reference": "sword"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert spent.status_code == 201, spent.text
        spend_id = spent.json()["id"]
    open_wallet(page, demo_server, wallet_id)
    expect(page.locator("#balance")).to_have_text("40")
    history = page.locator("#history-list > li")
    reverse_box = page.locator("#reverse-box")
    form = page.locator("#form-reverse")
    amount = form.get_by_label("Amount to reverse", exact=True)

    # A part of the spend refunded: the amount starts at all of it.
    history.first.get_by_role("button", name="Reverse this spend of 60 GOLD").click()
    expect(page.locator("#reverse-title")).to_have_text("Reverse the spend of 60 GOLD")
    expect(reverse_box).to_contain_text("Not reversed yet; left to reverse: 60 GOLD")
    expect(amount).to_have_value("60")
    expect(amount).to_be_focused()
    amount.fill("25")
    form.locator("button.send").click()
    expect(form.locator(".result")).to_contain_text("Reversed 25 GOLD of the spend.")
    expect(page.locator("#balance")).to_have_text("65")
    expect(history.first).to_contain_text("Reversal")
    expect(history.first).to_contain_text(f"reverses {spend_id}")
    expect(history.first.get_by_role("button", name=re.compile("Reverse"))).to_have_count(0)

    # Again: what is left (35) is prefilled; its answer is lost, the retry replays it.
    spend_row = history.filter(has_text="reference sword")
    spend_row.get_by_role("button", name="Reverse this spend of 60 GOLD").click()
    expect(reverse_box).to_contain_text("Already reversed: 25 in 1 reversal; left to reverse: 35 GOLD")
    expect(amount).to_have_value("35")
    key = form.locator(".key").inner_text()
    form.get_by_label("Lose the answer of the next send").check()
    form.locator("button.send").click()
    expect(form.locator(".pending-note")).to_contain_text("this reversal may or may not have happened")
    expect(page.locator("#balance")).to_have_text("100")
    steps.shot("reversal-answer-lost")
    with page.expect_response(lambda response: response.url.endswith("/reverse")) as answer:
        resend(form)
    assert answer.value.status == 201
    assert answer.value.headers.get("idempotent-replayed") == "true"
    assert answer.value.request.headers["idempotency-key"] == key
    expect(form.locator(".result")).to_contain_text("Replayed")
    expect(form.locator(".result")).to_contain_text("Reversed 35 GOLD of the spend.")
    expect(page.locator("#balance")).to_have_text("100")

    # Nothing left: no amount is offered, and more is refused by the service, clearly.
    spend_row.get_by_role("button", name="Reverse this spend of 60 GOLD").click()
    expect(reverse_box).to_contain_text("Already reversed: 60 in 2 reversals; left to reverse: 0 GOLD")
    expect(amount).to_have_value("")
    amount.fill("1")
    form.locator("button.send").click()
    expect(form.locator(".result")).to_contain_text("This would reverse more than is left of the original")
    expect(form.locator(".result")).to_contain_text("code reversal_exceeds_original · HTTP 409")
    expect(page.locator("#balance")).to_have_text("100")
    publish(steps.element(page.locator("#history-panel"), "history-panel"), "reversal")
    steps.shot("reversal-refused")

    # A journal is reversed whole only: its amount is fixed.
    with demo_server.client() as client:
        journal = client.post(
            "/v1/journal",
            json={"asset": "GOLD", "postings": [{"from": wallet_id, "to": "revenue", "amount": 30}]},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert journal.status_code == 201, journal.text
    journal_row = history.filter(has_text="Journal")
    expect(journal_row).to_have_count(1, timeout=REFRESH_WAIT_MS)
    journal_row.get_by_role("button", name="Reverse this journal of 30 GOLD").click()
    expect(reverse_box).to_contain_text("A journal is reversed whole only")
    expect(amount).to_have_value("30")
    expect(amount).not_to_be_editable()
    form.locator("button.send").click()
    expect(form.locator(".result")).to_contain_text("Reversed 30 GOLD of the journal.")
    expect(page.locator("#balance")).to_have_text("100")

    with demo_server.client() as client:
        assert balance(client, wallet_id) == 100
        items = client.get(f"/v1/wallets/{wallet_id}/transactions").json()["data"]
        reversals = [item["amount"] for item in items if item["reverses"] == spend_id]
        assert sorted(reversals) == [25, 35], items


def test_a_top_up_with_an_expiry_makes_a_lot_the_page_lists_and_the_card_names(
    demo_server: Server, browser: Browser, tmp_path: Path
) -> None:
    # A browser in a zone with a half-hour offset: the expiry typed is local time, sent with it.
    zone = ZoneInfo("Asia/Kolkata")
    context = browser.new_context(viewport=DESKTOP, timezone_id="Asia/Kolkata")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        steps = Steps(page, tmp_path)
        with demo_server.client() as client:
            wallet_id = new_wallet(client, "GOLD", owner_id=f"ui-{uuid.uuid4().hex[:10]}")
        open_wallet(page, demo_server, wallet_id)
        expect(card_fact(page, "next-expiry")).to_have_text("none")
        expect(page.locator("#lots-summary")).to_contain_text("No expiring credits")
        later = (datetime.now(zone) + timedelta(days=2)).replace(second=0, microsecond=0)
        sooner = later - timedelta(days=1)
        posts = requests_to(page, "/topup", "POST")

        top_up = money_form(page, "topup")
        send(top_up, "50", expires=later.strftime("%Y-%m-%dT%H:%M"))
        expect(top_up.locator(".result")).to_contain_text("Topped up 50 GOLD.")
        assert posts[0].post_data == f'{{"amount":50,"expires_at":"{later.isoformat()}"}}'
        assert later.isoformat().endswith("+05:30")
        later_utc = later.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        lots = page.locator("#lots-table tbody tr")
        expect(lots).to_have_count(1)
        expect(lots.first).to_contain_text("50 GOLD")
        expect(lots.first).to_contain_text(later_utc)
        expect(lots.first).to_contain_text(re.compile(r"\(in 1 d 23 h|\(in 2 d 0 h"))
        expect(card_fact(page, "next-expiry")).to_contain_text(f"50 GOLD on {later_utc}")

        bonus = money_form(page, "bonus")
        send(bonus, "10", expires=sooner.strftime("%Y-%m-%dT%H:%M"))
        send(money_form(page, "topup"), "5", expires="")  # no expiry: not a lot
        expect(page.locator("#balance")).to_have_text("65")
        send(money_form(page, "spend"), "15")
        expect(page.locator("#balance")).to_have_text("50")
        # The spend took the soonest lot first (10), then 5 of the next.
        expect(lots).to_have_count(1)
        expect(lots.first.locator("td").first).to_have_text("45 GOLD")
        expect(page.locator("#lots-summary")).to_contain_text("1 lot, 45 GOLD expiring in all")
        expect(card_fact(page, "next-expiry")).to_contain_text(f"45 GOLD on {later_utc}")
        publish(steps.element(page.locator("#lots-panel"), "lots-panel"), "lots")
        steps.shot("lots")
        with demo_server.client() as client:
            listed = client.get(f"/v1/wallets/{wallet_id}/lots").json()["data"]
        assert [(lot["amount"], lot["remaining"]) for lot in listed] == [(50, 45)]
        assert datetime.fromisoformat(listed[0]["expires_at"]) == later
    finally:
        context.close()
    assert not errors, errors


def test_the_events_panel_follows_the_feed_and_a_movement_made_elsewhere_refreshes_the_wallet(
    demo_server: Server, page: Page, tmp_path: Path
) -> None:
    steps = Steps(page, tmp_path)
    owner = f"ui-{uuid.uuid4().hex[:10]}"
    with demo_server.client() as client:
        wallet_id = new_wallet(client, "GOLD", owner_id=owner)
        assert topup(client, wallet_id, 100).status_code == 201
    open_wallet(page, demo_server, wallet_id)
    events = page.locator("#events-list > li")
    status = page.locator("#events-status")
    expect(status).to_contain_text("Following the feed")
    expect(events.first).to_contain_text("transaction.posted")
    expect(events.first).to_contain_text("Top up 100 GOLD")
    expect(events.first).to_contain_text("this wallet")
    expect(page.locator("#wallet-event-read")).to_be_hidden()  # what was there before: no refresh

    # A game server spends through the API: the event arrives, and the card is read again for it.
    with demo_server.client() as client:
        spent = client.post(
            f"/v1/wallets/{wallet_id}/spend",
            json={"amount": 30},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert spent.status_code == 201, spent.text
    expect(events.first).to_contain_text("Spend 30 GOLD")
    expect(events.first).to_contain_text(owner)
    expect(events.first).to_have_class(re.compile(r"\babout-current\b"))
    expect(page.locator("#wallet-event-read")).to_contain_text(
        "when the event feed brought transaction.posted for this wallet"
    )
    expect(page.locator("#balance")).to_have_text("70")
    expect(page.locator("#history-list > li").first).to_contain_text("−30 GOLD")

    # A hold placed elsewhere: its event, and `held` on the card.
    with demo_server.client() as client:
        held = client.post(
            f"/v1/wallets/{wallet_id}/holds",
            json={"amount": 20},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert held.status_code == 201, held.text
    expect(events.first).to_contain_text("hold.created")
    expect(events.first).to_contain_text("hold of 20 GOLD")
    expect(page.locator("#wallet-event-read")).to_contain_text("hold.created")
    expect(card_fact(page, "held")).to_have_text("20")
    expect(card_fact(page, "available")).to_have_text("50")
    expect(page.locator("#holds-list > li").first).to_contain_text("Pending")
    publish(steps.element(page.locator("#events-panel"), "events-panel"), "events")

    # Another wallet's movements show too, not marked as this wallet's; the list keeps the newest 50.
    with demo_server.client() as client:
        other = new_wallet(client, "GOLD", owner_id=f"ui-{uuid.uuid4().hex[:10]}")
        items = [
            {"op": "topup", "wallet_id": other, "amount": number, "idempotency_key": str(uuid.uuid4())}
            for number in range(1, 56)
        ]
        batch = client.post("/v1/batches", json={"items": items})
        assert batch.status_code == 200, batch.text
    expect(events.first).to_contain_text("Top up 55 GOLD")
    expect(events.first).not_to_have_class(re.compile(r"\babout-current\b"))
    expect(events).to_have_count(50)
    expect(events.last).to_contain_text("Top up 6 GOLD")
    steps.shot("events")


LOCAL_INPUT_OF = """(timestamp) => {
  const instant = new Date(timestamp);
  return new Date(instant.getTime() - instant.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
}"""


def test_a_statement_for_a_period_shows_its_totals_and_downloads_as_csv(
    demo_server: Server, page: Page, tmp_path: Path
) -> None:
    steps = Steps(page, tmp_path)
    owner = f"ui-{uuid.uuid4().hex[:10]}"
    with demo_server.client() as client:
        wallet_id = new_wallet(client, "GOLD", owner_id=owner)
        created = topup(client, wallet_id, 100).json()["created_at"]
        # The period starts at the next whole second after the top-up: its opening balance is 100.
        start = datetime.fromisoformat(created).replace(microsecond=0) + timedelta(seconds=1)
        time.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds()) + 0.05)
        for kind, amount, reference in (("spend", 30, "sword, \"gold\""), ("bonus", 5, None)):
            body: dict[str, Any] = {"amount": amount}
            if reference:
                body["reference"] = reference
            answer = client.post(
                f"/v1/wallets/{wallet_id}/{kind}", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
            )
            assert answer.status_code == 201, answer.text
        expected = client.get(f"/v1/wallets/{wallet_id}/statement", params={"from": start.isoformat()}).json()
    open_wallet(page, demo_server, wallet_id)
    panel = page.locator("#statement-panel")
    panel.get_by_label("From", exact=True).fill(page.evaluate(LOCAL_INPUT_OF, start.isoformat()))
    panel.get_by_role("button", name="Show statement").click()
    totals = page.locator("#statement-totals")
    expect(totals.locator("[data-total=opening]")).to_have_text("100 GOLD")
    expect(totals.locator("[data-total=credits]")).to_have_text("5 GOLD")
    expect(totals.locator("[data-total=debits]")).to_have_text("30 GOLD")
    expect(totals.locator("[data-total=closing]")).to_have_text("75 GOLD")
    expect(page.locator("#statement-identity")).to_have_text(
        "opening + credits − debits = closing: 100 + 5 − 30 = 75 ✓"
    )
    rows = page.locator("#statement-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("spend")
    expect(rows.nth(0).locator("td").nth(3)).to_have_text("30")
    expect(rows.nth(0).locator("td").nth(4)).to_have_text("70")
    expect(rows.nth(1)).to_contain_text("bonus")
    expect(rows.nth(1).locator("td").nth(2)).to_have_text("5")
    expect(page.locator("#statement-period")).to_contain_text(f"{owner}'s GOLD wallet")
    publish(steps.element(panel, "statement-panel"), "statement")

    # The CSV: fetched with the key, saved by the browser, the same numbers as the JSON.
    with page.expect_download() as download:
        panel.get_by_role("button", name="Download CSV").click()
    saved = download.value
    assert saved.suggested_filename.startswith(f"statement-{wallet_id}-"), saved.suggested_filename
    table = list(csv.DictReader(io.StringIO(Path(saved.path()).read_text(), newline="")))
    assert [(row["type"], row["direction"], row["amount"], row["balance_after"]) for row in table] == [
        ("spend", "debit", "30", "70"),
        ("bonus", "credit", "5", "75"),
    ]
    assert table[0]["reference"] == 'sword, "gold"'
    assert [row["transaction_id"] for row in table] == [item["id"] for item in expected["transactions"]]
    expect(page.locator("#statement-result")).to_contain_text("a header row, then 2 rows")
    expect(page.locator("#statement-result summary")).to_contain_text("GET /v1/wallets/")
    expect(page.locator("#statement-result pre.request")).to_contain_text("Accept: text/csv")

    # A period that ends before it starts: the service's 422, in words.
    panel.get_by_label("To (optional; empty: now)", exact=True).fill(
        page.evaluate(LOCAL_INPUT_OF, (start - timedelta(hours=1)).isoformat())
    )
    panel.get_by_role("button", name="Show statement").click()
    expect(page.locator("#statement-result")).to_contain_text("code validation_error · HTTP 422")
    expect(page.locator("#statement-view")).to_be_hidden()
    steps.shot("statement")
