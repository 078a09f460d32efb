"""The console in real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium).

They run in the SQLite pass only (one database is enough for what a browser
sees). Without the browser they are skipped with the reason, unless
``PELAGO_REQUIRE_SERVICES=1`` (CI), where a missing browser fails them;
``scripts/test`` installs it with apt-get when it runs as root.
The zh-CN screenshots in docs/screenshots/ are taken here.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from pelago.testing import TenantHandle, new_tenant
from tests.console_kit import PASSWORD, set_passwords

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"

pytestmark = pytest.mark.browser


def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(path) and os.access(path, os.X_OK)):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture
def browser(pytestconfig: pytest.Config) -> Iterator[Any]:
    if pytestconfig.getoption("pelago_db") != "sqlite":
        pytest.skip("browser tests run in the SQLite pass only")
    missing = _browser_missing()
    if missing:
        if os.environ.get("PELAGO_REQUIRE_SERVICES") == "1":
            pytest.fail(f"browser tests are mandatory here but {missing}")
        pytest.skip(f"SKIPPED browser test: {missing}")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download a driver or browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage", "--window-size=1280,900", "--lang=zh-CN"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], str]]:
    """``serve(app) -> base URL``: the app on a real HTTP server on a free port, for the browser."""
    from werkzeug.serving import make_server

    servers: list[Any] = []

    def start(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()


def _named(tenant: TenantHandle, name: str) -> None:
    """A readable tenant name for the screenshots."""
    from pelago.core.models import Tenant

    with tenant.runtime.sessions() as session:
        row = session.get(Tenant, tenant.id)
        assert row is not None
        row.name = name
        session.commit()


def _shot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1280, min(max(900, height), 2400))
    driver.save_screenshot(str(SHOTS / f"{name}.png"))
    driver.set_window_size(1280, 900)


def _sign_in(driver: Any, base: str, tenant: TenantHandle, who: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base + "/console/sign-in")
    driver.find_element(By.ID, "email").send_keys(f"{who}@{tenant.slug}.test")
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    _click_and_load(driver, By.ID, "sign-in")
    assert driver.find_element(By.ID, "sign-out")


def _click_and_load(driver: Any, by: str, value: str) -> None:
    """Click what submits a form or follows a link, and wait until the next page has replaced this one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(by, value).click()
    WebDriverWait(driver, 20).until(expected_conditions.staleness_of(page))
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")


def _text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.TAG_NAME, "body").text)


def test_rep_works_her_leads(browser: Any, serve: Callable[[Flask], str], make_app: Callable[..., Flask]) -> None:
    """Sign in, create a lead, see a duplicate merged, log an activity, be refused a claim, sign out."""
    from selenium.webdriver.common.by import By

    app = make_app(plugins=("pool",))
    tenant = new_tenant(app, slug="shili-rep")  # fixed: the screenshots stay the same from run to run
    _named(tenant, "示例教育")
    set_passwords(tenant)
    tenant.put("/api/v1/plugins/pool", json={"enabled": True})
    base = serve(app)
    driver = browser
    # a wrong password first: refused, still on the form
    driver.get(base + "/console/sign-in")
    driver.find_element(By.ID, "email").send_keys(f"rep@{tenant.slug}.test")
    driver.find_element(By.ID, "password").send_keys("wrong password")
    _click_and_load(driver, By.ID, "sign-in")
    assert "邮箱或密码错误" in _text(driver)
    _shot(driver, "sign-in")
    _sign_in(driver, base, tenant, "rep")

    driver.get(base + "/console/leads/new")
    driver.find_element(By.ID, "f-name").send_keys("王小明")
    driver.find_element(By.ID, "f-phone").send_keys("138 0013 8555")
    driver.find_element(By.ID, "f-source").send_keys("baidu")
    _click_and_load(driver, By.ID, "create-lead")
    assert "线索已创建" in _text(driver)
    lead_url = driver.current_url
    # the same person again, another format: merged into the same lead
    driver.get(base + "/console/leads/new")
    driver.find_element(By.ID, "f-phone").send_keys("+86 13800138555")
    driver.find_element(By.ID, "f-email").send_keys("wang@example.com")
    _click_and_load(driver, By.ID, "create-lead")
    assert "已合并" in _text(driver) and driver.current_url == lead_url

    driver.find_element(By.ID, "f-note").send_keys("电话沟通，周六试听")
    _click_and_load(driver, By.ID, "log-activity")
    assert "跟进已记录" in _text(driver)
    assert "电话沟通，周六试听" in driver.find_element(By.ID, "timeline").text
    _shot(driver, "lead")

    driver.get(base + "/console/leads")
    driver.find_element(By.ID, "f-q").send_keys("13800138555")
    driver.find_element(By.ID, "f-q").submit()
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
        lambda d: "q=13800138555" in d.current_url)  # htmx swaps the rows and pushes the URL (or a full load)
    assert "王小明" in driver.find_element(By.ID, "lead-rows").text
    _shot(driver, "leads")

    # the pool: a lead that rep2 gives back; rep2 takes it again before rep's claim
    pooled = tenant.lead("13800138666", who="rep2", name="李四")
    tenant.post("/api/v1/pool/release", who="rep2", json={"lead_ids": [pooled["id"]], "reason": "no answer"})
    pool_id = tenant.get("/api/v1/pool/pools").get_json()["items"][0]["id"]
    driver.get(f"{base}/console/p/pool/{pool_id}")
    driver.find_element(By.ID, f"pick-{pooled['id']}").click()
    _shot(driver, "pool")
    assert tenant.post("/api/v1/pool/claim", who="rep2", json={"lead_ids": [pooled["id"]]}).status_code == 200
    _click_and_load(driver, By.ID, "claim")
    refusals = driver.find_element(By.ID, "refusals").text
    assert str(pooled["id"]) in refusals

    driver.get(base + "/console/")
    _shot(driver, "dashboard")
    driver.set_window_size(390, 844)  # a phone: the menu wraps, nothing is cut off
    driver.get(lead_url)
    width = driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 400
    driver.save_screenshot(str(SHOTS / "lead-phone.png"))
    driver.set_window_size(1280, 900)
    _click_and_load(driver, By.ID, "sign-out")
    assert "/console/sign-in" in driver.current_url
    driver.get(base + "/console/leads")
    assert "/console/sign-in" in driver.current_url


def test_admin_imports_and_plugins(browser: Any, serve: Callable[[Flask], str], make_app: Callable[..., Flask],
                                   tmp_path: Path) -> None:
    """Import a CSV with a bad row and read the report; switch a plugin off; see a settings field error."""
    from selenium.webdriver.common.by import By

    app = make_app(plugins=("pool",))
    tenant = new_tenant(app, slug="shili-admin")
    _named(tenant, "示例教育")
    set_passwords(tenant)
    tenant.put("/api/v1/plugins/pool", json={"enabled": True})
    base = serve(app)
    driver = browser
    _sign_in(driver, base, tenant, "admin")

    csv = tmp_path / "线索.csv"
    csv.write_bytes("姓名,手机号,来源\n张三,13800138777,抖音\n李四,12345,抖音\n".encode("gb18030"))
    driver.get(base + "/console/imports")
    driver.find_element(By.ID, "f-file").send_keys(str(csv))
    _click_and_load(driver, By.ID, "upload")
    assert driver.find_element(By.ID, "import-status").get_attribute("data-status") == "done"
    assert driver.find_element(By.ID, "failed-rows").text == "1"
    report = driver.find_element(By.ID, "row-errors").text
    assert "2" in report and "phone" in report
    assert driver.find_element(By.ID, "errors-csv").get_attribute("href").endswith("/errors.csv")
    _shot(driver, "import")

    # the pool's menu entry and pages, then switched off: both gone
    driver.get(base + "/console/")
    assert driver.find_elements(By.CSS_SELECTOR, 'nav.menu a[href="/console/p/pool/"]')
    driver.get(base + "/console/plugins")
    _shot(driver, "plugins")
    _click_and_load(driver, By.ID, "switch-pool")
    assert not driver.find_elements(By.CSS_SELECTOR, 'nav.menu a[href="/console/p/pool/"]')
    driver.get(base + "/console/p/pool/")
    assert "页面不存在" in _text(driver)
    driver.get(base + "/console/plugins")
    _click_and_load(driver, By.ID, "switch-pool")
    assert driver.find_elements(By.CSS_SELECTOR, 'nav.menu a[href="/console/p/pool/"]')

    # a settings value out of range: the error is shown at its field, the typed value kept
    driver.get(base + "/console/plugins/pool")
    field = driver.find_element(By.ID, "s-sweep_batch")
    field.clear()
    field.send_keys("5")
    _click_and_load(driver, By.ID, "save-settings")
    error = driver.find_element(By.ID, "s-sweep_batch-error")
    assert error.text and driver.find_element(By.ID, "s-sweep_batch").get_attribute("aria-invalid") == "true"
    _shot(driver, "plugin-settings")
    _click_and_load(driver, By.ID, "sign-out")
    assert "/console/sign-in" in driver.current_url


def test_chromium_is_debians() -> None:
    """The browser tests use the system's browser: nothing downloads one."""
    if _browser_missing():
        pytest.skip("no browser here")
    assert shutil.which("chromium") == CHROMIUM
