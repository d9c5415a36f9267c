"""`taming app` in a real browser: Debian's headless chromium driven by selenium.

The app is started as a user starts it (`taming app --logdir RUN --port P`) on a free localhost port
over a tiny run folder; the test picks a landscape example, presses Sample, waits for the image,
downloads the PNG and checks its size, and checks that no exception text is on the page. Then
`kill PID` must stop the server (the command execs Streamlit, so no child keeps the port).

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian packages chromium, chromium-driver, which
`./run.sh test` installs): without them this test FAILS, it is not skipped. The screenshot is written to
outputs/test-artifacts/app_browser.png (printed; under the repository root).
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from helpers import make_run, seg_transformer_config

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "outputs" / "test-artifacts"
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1000")
EXCEPTION_TEXT = ("Traceback", "Exception", "Error:", "StreamlitAPIException")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(port: int, app: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert app.poll() is None, f"taming app exited with {app.returncode}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"taming app did not serve port {port} within {timeout} s")


def browser(downloads: Path, profile: Path) -> webdriver.Chrome:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "chromium and chromedriver are needed (apt-get install chromium chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return chrome


def test_sample_and_download_in_chromium(tmp_path):
    run = make_run(tmp_path, seg_transformer_config(None, None), "seg")  # 16 px images, 8x8 codes
    port, downloads = free_port(), tmp_path / "downloads"
    downloads.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    app = subprocess.Popen([sys.executable, "-m", "taming.cli.main", "app", "--logdir", str(run), "--port", str(port)],
                           cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    chrome = None
    try:
        wait_for_server(port, app)
        chrome = browser(downloads, tmp_path / "profile")
        chrome.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(chrome, 45)
        landscapes = wait.until(EC.element_to_be_clickable((By.XPATH, "//label[.//p[text()='procedural landscapes']]")))
        landscapes.click()  # pick an example: procedural landscape 0
        wait.until(EC.presence_of_element_located((By.XPATH, "//*[contains(text(), 'conditioning: landscape 0')]")))
        wait.until(EC.element_to_be_clickable((By.XPATH, "//button[.//p[text()='Sample']]"))).click()
        download = wait.until(EC.element_to_be_clickable((By.XPATH, "//button[.//p[starts-with(text(), 'Download PNG')]]")))
        assert "16x16 px" in download.text
        images = chrome.find_elements(By.CSS_SELECTOR, "img")
        assert len(images) >= 3  # conditioning, sample, real image
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        chrome.save_screenshot(str(ARTIFACTS / "app_browser.png"))
        print(f"screenshot: {ARTIFACTS / 'app_browser.png'}")
        body = chrome.find_element(By.TAG_NAME, "body").text
        assert not [t for t in EXCEPTION_TEXT if t in body], body
        download.click()
        deadline = time.monotonic() + 20
        while not [p for p in downloads.glob("*.png")] and time.monotonic() < deadline:
            time.sleep(0.2)
        (png,) = downloads.glob("*.png")
        assert png.name.startswith("2026-01-01T00-00-00-seg_landscape-0_8x8_k16_t1_seed0_")
        with Image.open(png) as picture:
            assert picture.size == (16, 16) and picture.mode == "RGB"
    finally:
        if chrome is not None:
            chrome.quit()
        app.send_signal(signal.SIGTERM)  # what `kill PID` sends
        try:
            app.wait(timeout=20)
        finally:
            if app.poll() is None:
                app.kill()
    with socket.socket() as s:  # nothing serves the port any more: no Streamlit child was left behind
        assert s.connect_ex(("127.0.0.1", port)) != 0


@contextlib.contextmanager
def served(tmp_path: Path, run: Path) -> Iterator[tuple[webdriver.Chrome, WebDriverWait]]:
    """`taming app --logdir RUN` on a free port, a browser on its page; both stopped afterwards."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    app = subprocess.Popen([sys.executable, "-m", "taming.cli.main", "app", "--logdir", str(run), "--port", str(port)],
                           cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chrome = None
    try:
        wait_for_server(port, app)
        (tmp_path / "downloads").mkdir(exist_ok=True)
        chrome = browser(tmp_path / "downloads", tmp_path / "profile")
        chrome.get(f"http://127.0.0.1:{port}/")
        yield chrome, WebDriverWait(chrome, 60)
    finally:
        if chrome is not None:
            chrome.quit()
        app.send_signal(signal.SIGTERM)
        try:
            app.wait(timeout=20)
        finally:
            if app.poll() is None:
                app.kill()


def test_stop_says_where_it_stopped_and_keeps_the_preview(tmp_path):
    """Issue 20: after Stop the page showed neither "stopped at N%" nor the rows sampled so far (a stopped
    Streamlit run may not write the session state, and the rerun starts before the stopped run ends)."""
    run = make_run(tmp_path, seg_transformer_config(None, None), "seg")
    with served(tmp_path, run) as (chrome, wait):
        for label in ("height (codes)", "width (codes)"):  # 64x64 codes: seconds of sampling, time to press Stop
            field = wait.until(EC.presence_of_element_located((By.XPATH, f"//input[@aria-label='{label}']")))
            field.send_keys(Keys.CONTROL, "a")
            field.send_keys("64", Keys.ENTER)
            wait.until(lambda c: c.find_element(By.XPATH, f"//input[@aria-label='{label}']").get_attribute("value") == "64")
        time.sleep(1)  # the rerun of the last change
        wait.until(EC.element_to_be_clickable((By.XPATH, "//button[.//p[text()='Sample']]"))).click()
        wait.until(EC.presence_of_element_located((By.XPATH, "//*[contains(text(), 'live preview')]")))
        chrome.find_element(By.XPATH, "//button[.//p[text()='Stop sampling']]").click()
        stopped = wait.until(EC.presence_of_element_located((By.XPATH, "//*[starts-with(text(), 'Sampling stopped at')]")))
        percent = int(re.match(r"Sampling stopped at (\d+)%", stopped.text).group(1))
        assert 0 < percent < 100, stopped.text
        wait.until(EC.presence_of_element_located((By.XPATH, "//*[text()='what was sampled before it stopped']")))
        body = chrome.find_element(By.TAG_NAME, "body").text
        assert not [t for t in EXCEPTION_TEXT if t in body], body
        assert "Download PNG" not in body  # no finished sample
