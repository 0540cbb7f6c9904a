"""The web app in a real browser: `sightql app` on loopback, driven by headless Chromium from Debian.

Uploads a photo on Recognize and samples a stage on Stage explorer, checks the labels rendered as
text, and saves screenshots under artifacts/ for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import sightql
from tests.test_app_command import free_port, wait_until_healthy

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
# Folders named after ImageNet labels, so the Stage explorer can score the model against them.
STAGED = {"espresso": "coffee.jpg", "tiger cat": "chelsea.jpg", "daisy": "flower.jpg", "palace": "china.jpg"}


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("headless Chromium is not installed: apt-get install -y chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1300",
                 f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def app_url(warehouse, photos_dir, tmp_path):
    with sightql.connect(warehouse) as session:
        stage = session.create_stage("pics")
        for folder, name in STAGED.items():
            stage.write_bytes(f"set/{folder}/{name}", (photos_dir / name).read_bytes())
    port = free_port()
    env = {**os.environ, "HOME": str(tmp_path)}
    server = subprocess.Popen(
        [sys.executable, "-m", "sightql", "app", "--warehouse", str(warehouse), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
    )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/_stcore/health", server)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for_text(driver, predicate, what: str, seconds: float = 180) -> str:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, seconds, poll_frequency=0.5).until(
            lambda d: predicate(d.find_element(By.TAG_NAME, "body").text)
        )
    except TimeoutException:
        _screenshot(driver, f"failed-{what}")
        pytest.fail(f"{what} did not render within {seconds} s; page text: {driver.find_element(By.TAG_NAME, 'body').text[:2000]}")
    return driver.find_element(By.TAG_NAME, "body").text


def _wait_for_element(driver, css: str, seconds: float = 120) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, seconds, poll_frequency=0.5).until(lambda d: d.find_elements(By.CSS_SELECTOR, css))


def _wait_for_xpath(driver, xpath: str, seconds: float = 120):
    """The element at ``xpath`` once the page has drawn it (a page run draws its parts one after another)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, seconds, poll_frequency=0.5).until(lambda d: d.find_elements(By.XPATH, xpath))
    return driver.find_element(By.XPATH, xpath)


def _screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def _idle(driver) -> None:
    """Wait until Streamlit has no script running (its status widget is gone)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 180, poll_frequency=0.5).until(
        lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-testid='stStatusWidget']")
    )


def test_upload_on_recognize_and_sample_on_stage_explorer(browser, app_url, photos_dir):
    from selenium.webdriver.common.by import By

    browser.get(app_url)
    _wait_for_text(browser, lambda text: "Recognize" in text, "the Recognize page")
    _wait_for_element(browser, "input[type=file]")
    upload = browser.find_element(By.CSS_SELECTOR, "input[type=file]")
    upload.send_keys(str(photos_dir / "chelsea.jpg"))
    text = _wait_for_text(browser, lambda t: any(c in t for c in CAT_CLASSES) and "%" in t, "chelsea's label")
    _idle(browser)
    shot = _screenshot(browser, "recognize")
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    assert "chelsea.jpg" in text

    browser.find_element(By.XPATH, "//a[@data-testid='stSidebarNavLink'][contains(., 'Stage explorer')]").click()
    _wait_for_text(browser, lambda t: "Sample and classify" in t, "the Stage explorer form")
    _wait_for_element(browser, "input[aria-label='Prefix']")
    prefix = browser.find_element(By.CSS_SELECTOR, "input[aria-label='Prefix']")
    prefix.send_keys("set/")
    browser.find_element(By.XPATH, "//button[.//p[text()='Sample and classify']]").click()
    text = _wait_for_text(browser, lambda t: "espresso" in t and "accuracy" in t.lower(), "the sampled labels")
    _idle(browser)
    shot = _screenshot(browser, "stage-explorer")
    assert shot.stat().st_size > 20_000
    thumbnails = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stMain'] img")
    assert len(thumbnails) == 4
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", thumbnails[-1])
    _screenshot(browser, "stage-explorer-grid")
    assert "4 of 4 file(s)" in text
    assert "daisy" in text and "palace" in text


def test_a_page_opened_by_its_address_keeps_the_apps_navigation(browser, app_url, monkeypatch):
    """Opening /generate directly shows the app's own page list and sidebar, not Streamlit's folder listing."""
    browser.get(f"{app_url}/generate")
    text = _wait_for_text(browser, lambda t: "No image provider is configured" in t, "the Generate page")
    _idle(browser)
    _screenshot(browser, "generate-no-provider")
    assert "Stage explorer" in text and "SQL" in text and "Model" in text
    assert "sql console" not in text.lower() and "stage_explorer" not in text


def test_search_page_creates_an_index_and_shows_the_images_nearest_a_picked_one(browser, app_url, warehouse, photos_dir):
    """Search: no index yet, so the page's form creates one; then picking one of the table's images shows the grid."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    searched = ("chelsea.jpg", "coffee.jpg", "astronaut.jpg", "rocket.jpg", "china.jpg", "flower.jpg")
    with sightql.connect(warehouse) as session:  # the app holds the warehouse only while a page runs
        session.store_images("photos", [(name, (photos_dir / name).read_bytes()) for name in searched])
    browser.get(f"{app_url}/search")
    _wait_for_text(browser, lambda t: "No table has a search index yet" in t, "the Search page without an index")
    _idle(browser)
    _wait_for_xpath(browser, "//button[.//p[text()='Create index']]").click()
    _wait_for_text(browser, lambda t: "index of photos: embedded 6 row(s)" in t and "Near-duplicates" in t, "the new index")
    _idle(browser)
    _wait_for_xpath(browser, "//label[.//p[text()=\"Pick one of the table's images\"]]").click()
    _wait_for_text(browser, lambda t: "Image of the table" in t, "the image picker")
    _idle(browser)
    picker = _wait_for_xpath(browser, "//div[@data-testid='stSelectbox'][.//p[text()='Image of the table']]//input")
    picker.click()
    picker.send_keys("coffee.jpg", Keys.ENTER)
    text = _wait_for_text(browser, lambda t: "6 nearest image(s) of photos" in t and "distance" in t, "the nearest images")
    _idle(browser)
    thumbnails = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stMain'] img")
    assert len(thumbnails) == 1 + 6  # the query, then each of the table's six images, nearest first
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", thumbnails[-1])
    shot = _screenshot(browser, "search-grid")
    assert shot.stat().st_size > 20_000
    assert "1. coffee.jpg · distance 0.0000" in text
    assert all(name in text for name in searched)
