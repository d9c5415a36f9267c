"""`taming app` in a real browser: Debian's headless chromium driven by selenium.

The app is started as a user starts it (`taming app --logdir RUN --port P`) on a free localhost port
over a tiny run folder; the test picks a landscape example, presses Sample, waits for the image,
downloads the PNG and checks its size, and checks that no exception text is on the page. Then
`kill PID` must stop the server (the command execs Streamlit, so no child keeps the port).
Two users of one app (two browsers, one cached model) sampling at the same time at different
precisions each download the bytes they get alone.

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

import pytest
import torch
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from helpers import make_run, seg_transformer_config
from taming.checkpoint import read_state_dict, save_state_dict
from taming.generation import conditioning as cond
from taming.generation.drawing import SamplingSpec, decode_codes, sample_grid
from taming.generation.pictures import png_bytes, to_pixels
from taming.generation.runs import load_run, resolve_run

pytestmark = pytest.mark.slow  # a browser and a server process

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


def start_app(run: Path, cwd: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    app = subprocess.Popen([sys.executable, "-m", "taming.cli.main", "app", "--logdir", str(run), "--port", str(port)],
                           cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_server(port, app)
    return app, port


def stop_app(app: subprocess.Popen) -> None:
    app.send_signal(signal.SIGTERM)  # what `kill PID` sends
    try:
        app.wait(timeout=20)
    finally:
        if app.poll() is None:
            app.kill()


def downloaded(folder: Path, timeout: float = 20) -> Path:
    deadline = time.monotonic() + timeout
    while not [p for p in folder.glob("*.png")] and time.monotonic() < deadline:
        time.sleep(0.2)
    (png,) = folder.glob("*.png")
    return png


def test_sample_and_download_in_chromium(tmp_path):
    run = make_run(tmp_path, seg_transformer_config(None, None), "seg")  # 16 px images, 8x8 codes
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    app, port = start_app(run, tmp_path)
    chrome = None
    try:
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
        png = downloaded(downloads)
        assert png.name.startswith("2026-01-01T00-00-00-seg_landscape-0_8x8_k16_t1_seed0_")
        with Image.open(png) as picture:
            assert picture.size == (16, 16) and picture.mode == "RGB"
    finally:
        if chrome is not None:
            chrome.quit()
        stop_app(app)
    with socket.socket() as s:  # nothing serves the port any more: no Streamlit child was left behind
        assert s.connect_ex(("127.0.0.1", port)) != 0


@contextlib.contextmanager
def served(tmp_path: Path, run: Path) -> Iterator[tuple[webdriver.Chrome, WebDriverWait]]:
    """`taming app --logdir RUN` on a free port, a browser on its page; both stopped afterwards."""
    app, port = start_app(run, tmp_path)
    chrome = None
    try:
        (tmp_path / "downloads").mkdir(exist_ok=True)
        chrome = browser(tmp_path / "downloads", tmp_path / "profile")
        chrome.get(f"http://127.0.0.1:{port}/")
        yield chrome, WebDriverWait(chrome, 60)
    finally:
        if chrome is not None:
            chrome.quit()
        stop_app(app)


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


def sharpened(run: Path) -> None:
    """The run's GPT weights made large: random small ones give near-uniform logits, where every
    precision draws the same codes and a mix-up could not show."""
    ckpt = run / "checkpoints" / "last.ckpt"
    weights, g = read_state_dict(ckpt), torch.Generator().manual_seed(0)
    for key, value in weights.items():
        if key.startswith("transformer.") and not key.endswith(".mask"):
            weights[key] = value + torch.randn(value.shape, generator=g) * 0.5
    save_state_dict(ckpt, weights)


def set_up(chrome: webdriver.Chrome, port: int, width: int, precision: str) -> None:
    """A landscape sample `width` codes wide at `precision`, ready to press Sample."""
    chrome.get(f"http://127.0.0.1:{port}/")
    wait = WebDriverWait(chrome, 45)
    wait.until(EC.element_to_be_clickable((By.XPATH, "//label[.//p[text()='procedural landscapes']]"))).click()
    wait.until(EC.presence_of_element_located((By.XPATH, "//*[contains(text(), 'conditioning: landscape 0')]")))
    for label, value in (("width (codes)", str(width)), ("decoding precision", precision)):
        field = wait.until(EC.element_to_be_clickable((By.XPATH, f"//input[@aria-label='{label}']")))
        field.click()
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(value, Keys.ENTER)  # a number; or the one option the typed text leaves
        wait.until(lambda c: c.find_element(By.XPATH, f"//input[@aria-label='{label}']").get_attribute("value") == value)


def test_two_users_at_different_precisions_each_get_their_own_sample(tmp_path):
    run = make_run(tmp_path, seg_transformer_config(None, None), "seg")
    sharpened(run)
    width, precisions = 64, ("fp32", "int8")  # 8 x 64 codes: the sliding window, about a second each
    loaded = load_run(resolve_run(str(run)))
    condition = cond.encode_condition(loaded, cond.landscape_example(loaded, 0, (16, 2 * width)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the app's server runs
    try:
        alone = {p: png_bytes(to_pixels(decode_codes(loaded, sample_grid(
            loaded, condition, SamplingSpec((8, width), top_k=16, seed=0, precision=p))))) for p in precisions}
    finally:
        torch.set_num_threads(threads)
    assert alone["fp32"] != alone["int8"]  # the two precisions draw different images: a mix-up would show
    app, port = start_app(run, tmp_path)
    chromes = []
    try:
        for p in precisions:
            (tmp_path / p).mkdir()
            chromes.append(browser(tmp_path / p, tmp_path / f"profile_{p}"))
            set_up(chromes[-1], port, width, p)
        buttons = [WebDriverWait(c, 45).until(EC.element_to_be_clickable((By.XPATH, "//button[.//p[text()='Sample']]")))
                   for c in chromes]
        for button in buttons:  # both users press Sample at once: the two runs overlap on the server
            button.click()
        for chrome, p in zip(chromes, precisions):
            WebDriverWait(chrome, 90).until(EC.element_to_be_clickable(
                (By.XPATH, "//button[.//p[starts-with(text(), 'Download PNG')]]"))).click()
            assert downloaded(tmp_path / p).read_bytes() == alone[p], f"the {p} user got another image"
    finally:
        for chrome in chromes:
            chrome.quit()
        stop_app(app)
