"""The demo UI in a real browser, against a real `wallet serve`: what a person can do with it.

Each step saves a screenshot under the test's tmp_path (NN-step.png); docs/ui-wallet.png and
docs/ui-history.png are copies of two of them.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, FloatRect, Locator, Page, Request, ViewportSize, expect

from support import Server, balance, create_key, new_wallet, start_server, topup, wallet_command

pytestmark = pytest.mark.browser

TIMEOUT_MS = 10_000
DESKTOP = ViewportSize(width=1280, height=900)
PHONE = ViewportSize(width=390, height=844)
HISTORY_TOPUPS = 12
WALLET_VIEW_HEIGHT = 1640  # down to the spend form's answer, at DESKTOP width

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

    def top(self, name: str, height: int) -> Path:
        """The top `height` pixels of the whole page."""
        path = self.directory / f"{name}.png"
        width = self.page.viewport_size["width"] if self.page.viewport_size else DESKTOP["width"]
        clip = FloatRect(x=0, y=0, width=width, height=height)
        self.page.screenshot(path=path, full_page=True, clip=clip)
        return path


def money_form(page: Page, kind: str) -> Locator:
    return page.locator(f"#form-{kind}")


def send(form: Locator, amount: str, **fields: str) -> None:
    for name, value in fields.items():
        form.locator(f"input[name={name}]").fill(value)
    form.get_by_label("Amount", exact=True).fill(amount)
    form.locator("button.send").click()


def posts_to(page: Page, path_end: str) -> list[str]:
    """Records the POST requests the page sends to URLs ending in `path_end`."""
    sent: list[str] = []

    def record(request: Request) -> None:
        if request.method == "POST" and request.url.endswith(path_end):
            sent.append(request.url)

    page.on("request", record)
    return sent


def open_new_wallet(page: Page, server: Server, owner: str) -> None:
    page.goto(server.base_url + "/")
    expect(page.locator("#session-status")).to_contain_text("demo key")
    expect(page.locator("#wallet-card")).to_be_visible()  # the default owner's wallet
    page.get_by_label("Owner", exact=True).fill(owner)
    page.get_by_role("button", name="Show wallets").click()
    expect(page.locator("#wallet-result")).to_contain_text(f"{owner} has no wallets yet")
    page.get_by_label("Create a wallet for this owner in").select_option("GOLD")
    page.get_by_role("button", name="Create wallet").click()
    expect(page.locator("#wallet-result")).to_contain_text(f"Created a GOLD wallet for {owner}.")
    expect(page.locator("#balance")).to_have_text("0")


def test_a_person_moves_money_sees_declines_replays_and_pages_through_history(
    demo_server: Server, demo_key: str, page: Page, tmp_path: Path
) -> None:
    steps = Steps(page, tmp_path)
    shown_balance = page.locator("#balance")
    owner = f"ui-{uuid.uuid4().hex[:10]}"
    open_new_wallet(page, demo_server, owner)
    wallet_id = page.locator("#wallet-id").inner_text()
    steps.shot("wallet-created")

    top_up = money_form(page, "topup")
    first_key = top_up.locator(".key").inner_text()
    send(top_up, "100", reference="order-17")
    expect(top_up.locator(".result")).to_contain_text("Topped up 100 GOLD. Balance after: 100.")
    expect(shown_balance).to_have_text("100")
    assert top_up.locator(".key").inner_text() == first_key, "the key is kept after a send"
    steps.shot("topped-up")

    top_up.get_by_role("button", name="Send again with the same key").click()
    expect(top_up.locator(".result")).to_contain_text("Replayed")
    expect(top_up.locator(".result")).to_contain_text("No money moved this time.")
    expect(shown_balance).to_have_text("100")
    steps.shot("top-up-replayed")

    spend = money_form(page, "spend")
    send(spend, "500")
    expect(spend.locator(".result")).to_contain_text("The wallet does not hold enough for this.")
    expect(spend.locator(".result")).to_contain_text("Detail: Wallet")
    expect(spend.locator(".result")).to_contain_text("code insufficient_funds · HTTP 409")
    expect(shown_balance).to_have_text("100")
    steps.shot("spend-declined")

    spend.get_by_role("button", name="Send again with the same key").click()
    expect(spend.locator(".result")).to_contain_text("Replayed")
    expect(spend.locator(".result")).to_contain_text("Idempotent-Replayed: true")
    expect(shown_balance).to_have_text("100")
    steps.shot("spend-decline-replayed")
    steps.top("wallet-view", WALLET_VIEW_HEIGHT)

    spend_posts = posts_to(page, "/spend")
    key_before_edit = spend.locator(".key").inner_text()
    send(spend, "10.5")
    expect(spend.locator(".result")).to_contain_text("Enter a whole number from 1 to 1,000,000,000,000,000")
    expect(spend.get_by_label("Amount", exact=True)).to_have_attribute("aria-invalid", "true")
    assert spend.locator(".key").inner_text() != key_before_edit, "editing the amount makes a new key"
    assert spend_posts == [], "an invalid amount is not sent"
    expect(spend.get_by_role("button", name="Send again with the same key")).to_be_disabled()
    steps.shot("amount-rejected-before-sending")

    bonus = money_form(page, "bonus")
    bonus_posts = posts_to(page, "/bonus")
    bonus.get_by_label("Amount", exact=True).fill("7")
    bonus.locator("button.send").dblclick()
    expect(bonus.locator(".result")).to_contain_text("Granted a bonus of 7 GOLD. Balance after: 107.")
    expect(shown_balance).to_have_text("107")
    assert len(bonus_posts) == 1, f"a double click sent {len(bonus_posts)} requests"
    steps.shot("bonus-double-click-sent-once")

    recipient = f"ui-{uuid.uuid4().hex[:10]}"
    with demo_server.client() as client:
        recipient_wallet = new_wallet(client, "GOLD", owner_id=recipient)
    transfer = money_form(page, "transfer")
    send(transfer, "40", recipient=str(uuid.uuid4()))
    expect(transfer.locator(".result")).to_contain_text("There is no wallet with that id.")
    expect(transfer.locator(".result")).to_contain_text("code wallet_not_found · HTTP 404")
    steps.shot("transfer-to-unknown-wallet")
    send(transfer, "40", recipient=recipient)
    expect(transfer.locator(".result")).to_contain_text("Transferred 40 GOLD. Balance after: 67.")
    expect(shown_balance).to_have_text("67")
    expect(page.locator("#health-verify")).to_contain_text("Ledger OK")
    expect(page.locator("#health-balances tbody tr").last).to_contain_text("0 ✓")
    page.evaluate("window.scrollTo(0, 0)")
    steps.shot("transferred-wallet-view", full_page=False)

    with demo_server.client() as client:
        assert balance(client, wallet_id) == 67
        assert balance(client, recipient_wallet) == 40
        for _ in range(HISTORY_TOPUPS):
            assert topup(client, wallet_id, 1).status_code == 201

    history = page.locator("#history-list > li")
    page_label = page.locator("#history-page")
    page.get_by_label("Per page", exact=True).select_option("5")
    expect(history).to_have_count(5)
    expect(page_label).to_have_text("Page 1: 5 transactions.")
    expect(history.first).to_contain_text("Top up")
    expect(history.first).to_contain_text("+1 GOLD")
    expect(history.first).to_contain_text("balance after 79")
    older = page.get_by_role("button", name="Older")
    older.click()
    expect(page_label).to_have_text("Page 2: 5 transactions.")
    older.click()
    # 12 top-ups of 1, the transfer, the bonus and the first top-up: 15 transactions in all.
    expect(page_label).to_have_text("Page 3: 5 transactions, no older ones.")
    expect(older).to_be_disabled()
    oldest = history.last
    expect(oldest).to_contain_text("+100 GOLD")
    expect(oldest).to_contain_text("from treasury:GOLD")
    expect(oldest).to_contain_text("reference order-17")
    expect(oldest.locator("tbody tr")).to_have_count(2)
    expect(oldest.locator("tbody tr").first).to_contain_text("debit")
    expect(oldest.locator("tbody tr").first).to_contain_text("— (system)")
    expect(oldest.locator("tbody tr").last).to_contain_text("this wallet")
    transfer_item = history.nth(2)
    expect(transfer_item).to_contain_text("Transfer")
    expect(transfer_item).to_contain_text(f"to {recipient_wallet}")
    expect(transfer_item).to_contain_text("balance after 67")
    page.locator("#history-panel").screenshot(path=tmp_path / "history-panel.png")
    steps.shot("history-page-3")
    page.get_by_role("button", name="Newer").click()
    expect(page_label).to_have_text("Page 2: 5 transactions.")

    page.set_viewport_size(PHONE)
    page.reload()
    expect(page.locator("#wallet-card")).to_be_visible()
    page.get_by_label("Owner", exact=True).fill(owner)
    page.get_by_role("button", name="Show wallets").click()
    expect(shown_balance).to_have_text("79")
    expect(history).to_have_count(10)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "no sideways scroll"
    steps.shot("phone-width-top", full_page=False)
    page.locator("#history-panel").scroll_into_view_if_needed()
    steps.shot("phone-width-history", full_page=False)

    assert demo_key not in demo_server.log_path.read_text(), "the demo key must never be logged"


def test_without_a_demo_key_the_page_asks_for_one_and_forgets_it_on_request(
    external_server: Server, page: Page, tmp_path: Path
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
    expect(page.locator("#health-verify")).to_contain_text("Ledger OK")
    assert page.evaluate("sessionStorage.getItem('wallet-demo-api-key')") == external_server.admin_key
    assert external_server.admin_key not in page.url
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
