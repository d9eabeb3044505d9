"""The dashboard in a real browser (Debian's chromium + chromium-driver,
driven by python3-selenium): sign in with the token, click Restart on a
service and see its state and PID change on the page without a reload,
then watch a line the service prints appear in the live log of
/service/NAME. Screenshots go to $SVC_SCREENSHOT_DIR (the build folder)."""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

MONITOR = os.environ.get("SVC_MONITOR", "svc-monitor")
SHOTS = os.environ.get("SVC_SCREENSHOT_DIR", tempfile.gettempdir())
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def monitor(tmp_path):
    port = free_port()
    ini = tmp_path / "m.ini"
    ini.write_text(f"""
[monitor]
http = 127.0.0.1:{port}
db = {tmp_path}/m.sqlite
log_dir = {tmp_path}/logs
token_file = {tmp_path}/token
sample_interval_ms = 500

[service.ticker]
command = /bin/sh -c 'i=0; while :; do i=$((i+1)); echo "tick $i at $(date +%s%N)"; sleep 0.3; done'
start_secs = 0

[service.sleeper]
command = /bin/sleep 3600
start_secs = 0
""")
    proc = subprocess.Popen([MONITOR, "--config", str(ini)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    line = proc.stdout.readline()
    assert f"127.0.0.1:{port}" in line, line
    token = (tmp_path / "token").read_text().strip()
    yield f"http://127.0.0.1:{port}", token
    proc.terminate()
    proc.wait(30)


@pytest.fixture
def browser():
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
              "--disable-dev-shm-usage", "--window-size=1400,1000",
              f"--user-data-dir={tempfile.mkdtemp(prefix='svc-chrome.')}"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


def row(drv, name):
    return drv.find_element(By.CSS_SELECTOR, f'tr[data-service="{name}"]')


def test_sign_in_restart_and_watch_the_log(monitor, browser):
    url, token = monitor
    wait = WebDriverWait(browser, 15)
    browser.get(url + "/")
    wait.until(lambda d: row(d, "ticker").find_element(
        By.CSS_SELECTOR, ".state").text == "RUNNING")
    assert not browser.find_elements(By.CSS_SELECTOR, "button[data-action]")

    browser.find_element(By.LINK_TEXT, "Sign in").click()
    box = wait.until(lambda d: d.find_element(By.NAME, "token"))
    box.send_keys("wrong")
    box.submit()
    wait.until(lambda d: "Wrong token" in d.page_source)
    box = browser.find_element(By.NAME, "token")
    box.send_keys(token)
    box.submit()
    wait.until(lambda d: d.find_elements(
        By.CSS_SELECTOR, 'tr[data-service="ticker"] button[data-action="restart"]'))
    assert "Sign out" in browser.page_source

    # Restart: the page is not reloaded (the marker survives), the state and
    # the PID change in place.
    pid_before = row(browser, "ticker").find_element(By.CSS_SELECTOR, ".pid").text
    assert pid_before.isdigit()
    browser.execute_script("window.svcMarker = 42;")
    row(browser, "ticker").find_element(
        By.CSS_SELECTOR, 'button[data-action="restart"]').click()

    def restarted(d):
        r = row(d, "ticker")
        pid = r.find_element(By.CSS_SELECTOR, ".pid").text
        state = r.find_element(By.CSS_SELECTOR, ".state").text
        return pid.isdigit() and pid != pid_before and state == "RUNNING"
    wait.until(restarted)
    assert browser.execute_script("return window.svcMarker") == 42
    assert row(browser, "ticker").find_element(
        By.CSS_SELECTOR, ".restarts").text == "1"
    time.sleep(1.2)  # a sample or two: CPU and memory filled in live
    browser.save_screenshot(os.path.join(SHOTS, "dashboard-signed-in.png"))

    # The live log: a line printed after the page opened shows up.
    browser.get(url + "/service/ticker")
    opened_ns = time.time_ns()

    def fresh_line(d):
        for cell in d.find_elements(By.CSS_SELECTOR,
                                    '.log[data-stream="stdout"] td.line'):
            m = re.match(r"tick \d+ at (\d+)", cell.text)
            if m and int(m.group(1)) > opened_ns:
                return True
        return False
    wait.until(fresh_line)
    pause = browser.find_element(By.CSS_SELECTOR,
                                 'button.pause[data-stream="stdout"]')
    assert pause.is_displayed()
    assert browser.find_element(By.CSS_SELECTOR, 'button[data-action="stop"]')
    browser.execute_script(
        "document.querySelector('.log[data-stream=stdout]').scrollIntoView()")
    browser.save_screenshot(os.path.join(SHOTS, "service-live-log.png"))

    # The search box finds a line.
    search = browser.find_element(By.NAME, "q")
    search.send_keys("tick 1 ")
    search.submit()
    wait.until(lambda d: "newest first" in d.page_source)
    assert re.search(r"\d+ lines? (or more )?\(newest first", browser.page_source)
