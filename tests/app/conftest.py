"""The browser the page's tests drive (tests/app/test_ui_browser.py)."""

from __future__ import annotations

import shutil
import tempfile

import pytest
from ui_fixtures import CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS


@pytest.fixture
def chromium():
    """A headless Chromium through Selenium; the test skips, saying what is missing, without one."""
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromium-driver", CHROMEDRIVER))
               if shutil.which(path) is None]
    if missing:
        pytest.skip(f"browser tests need Debian's {' and '.join(missing)} (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="browser tests need selenium (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    profile = tempfile.mkdtemp(prefix="mmad-edge-chromium-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
