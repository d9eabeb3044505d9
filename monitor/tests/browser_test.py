"""The dashboard in a real browser (Debian's chromium + chromium-driver,
driven by python3-selenium): sign in with the token, click Restart on a
service and see its state and PID change on the page without a reload,
then watch a line the service prints appear in the live log of
/service/NAME; see the banner of a store on a full disk come and go live.
Screenshots go to $SVC_SCREENSHOT_DIR (the build folder)."""
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


def monitor_ini(tmp_path, port, services, db=None):
    ini = tmp_path / "m.ini"
    ini.write_text(f"""
[monitor]
http = 127.0.0.1:{port}
db = {db or tmp_path / "m.sqlite"}
log_dir = {tmp_path}/logs
token_file = {tmp_path}/token
sample_interval_ms = 500
""" + services)
    return ini


def run_monitor(tmp_path, services, db=None):
    port = free_port()
    ini = monitor_ini(tmp_path, port, services, db)
    proc = subprocess.Popen([MONITOR, "--config", str(ini)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    line = proc.stdout.readline()
    assert f"127.0.0.1:{port}" in line, line
    token = (tmp_path / "token").read_text().strip()
    return proc, port, f"http://127.0.0.1:{port}", token


@pytest.fixture
def monitor(tmp_path):
    proc, _, url, token = run_monitor(tmp_path, """
[service.ticker]
command = /bin/sh -c 'i=0; while :; do i=$((i+1)); echo "tick $i at $(date +%s%N)"; sleep 0.3; done'
start_secs = 0

[service.sleeper]
command = /bin/sleep 3600
start_secs = 0
""")
    yield url, token
    proc.terminate()
    proc.wait(30)


def sign_in(browser, wait, url, token):
    browser.get(url + "/login")
    box = wait.until(lambda d: d.find_element(By.NAME, "token"))
    box.send_keys(token)
    box.submit()
    wait.until(lambda d: "Sign out" in d.page_source)


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


def test_health_limits_and_the_reload_button(tmp_path, browser):
    """Health verdicts and limits on the pages; the signed-in Reload button
    applies an edited config: a new service appears, the old one keeps its
    PID."""
    closed = free_port()  # nothing listens here: the probe fails
    base = """
[service.good]
command = /bin/sleep 3600
start_secs = 0
health = tcp://127.0.0.1:{port}
health_interval_ms = 300
max_memory_restart = 256M
rlimit_nofile = 512

[service.bad]
command = /bin/sleep 3601
start_secs = 0
health = tcp://127.0.0.1:{closed}
health_interval_ms = 300
health_failures = 1000
"""
    proc, port, url, token = run_monitor(tmp_path, "")
    proc.terminate()
    proc.wait(30)  # the port is known now: the real config names it
    services = base.format(port=port, closed=closed)
    ini = monitor_ini(tmp_path, port, services)
    proc = subprocess.Popen([MONITOR, "--config", str(ini)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        assert f"127.0.0.1:{port}" in proc.stdout.readline()
        wait = WebDriverWait(browser, 20)
        browser.get(url + "/")
        wait.until(lambda d: row(d, "good").find_element(
            By.CSS_SELECTOR, "td.health").text == "passing")
        wait.until(lambda d: row(d, "bad").find_element(
            By.CSS_SELECTOR, "td.health").text.startswith("failing"))
        assert "connect" in row(browser, "bad").find_element(
            By.CSS_SELECTOR, "td.health").text
        browser.get(url + "/service/good")
        facts = browser.find_element(By.CSS_SELECTOR, "table.facts").text
        assert "max_memory_restart 256.0 MiB" in facts, facts
        assert "rlimit_nofile 512" in facts, facts
        assert "tcp://127.0.0.1:" in facts, facts

        sign_in(browser, wait, url, token)
        pid = row(browser, "good").find_element(By.CSS_SELECTOR, ".pid").text
        ini.write_text(ini.read_text() +
                       "\n[service.added]\ncommand = /bin/sleep 3602\n"
                       "start_secs = 0\n")
        browser.find_element(By.XPATH,
                             "//button[text()='Reload config']").click()

        clicks = [1]
        clicked_at = [time.monotonic()]

        def added_running(d):
            d.get(url + "/")
            r = d.find_elements(By.CSS_SELECTOR, 'tr[data-service="added"]')
            if not r and clicks[0] < 3 and \
                    time.monotonic() - clicked_at[0] > 4:
                # Once in a fresh-clone ci/test the first click never led to
                # a reload (the page was still loading?); the same file
                # reloaded again is a no-op, so ask again, and say so.
                print(f"browser_test: reload click {clicks[0]} not applied "
                      "yet; clicking again")
                clicks[0] += 1
                clicked_at[0] = time.monotonic()
                d.find_element(By.XPATH,
                               "//button[text()='Reload config']").click()
                return False
            return r and r[0].find_element(
                By.CSS_SELECTOR, ".state").text == "RUNNING"
        wait.until(added_running)
        assert row(browser, "good").find_element(
            By.CSS_SELECTOR, ".pid").text == pid
        browser.save_screenshot(os.path.join(SHOTS, "dashboard-health.png"))
    finally:
        proc.terminate()
        proc.wait(30)


def test_store_banner_on_a_full_disk(tmp_path, browser):
    """The store's file system fills up (a 4 MiB tmpfs, mounted here where
    the machine allows it): the open dashboard shows the banner with the
    error without a reload, and drops it once space returns."""
    disk = tmp_path / "full"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m",
                              "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip("mount -t tmpfs refused: " + mounted.stderr.strip())
    proc = None
    try:
        proc, _, url, _ = run_monitor(tmp_path, """
[service.chatty]
command = /bin/sh -c 'while :; do echo chatty-line-0123456789abcdefghijklmnopqrstuvwxyz; sleep 0.005; done'
start_secs = 0
""", db=disk / "m.sqlite")
        wait = WebDriverWait(browser, 30)
        browser.get(url + "/")
        wait.until(lambda d: row(d, "chatty").find_element(
            By.CSS_SELECTOR, ".state").text == "RUNNING")
        assert not browser.find_elements(By.ID, "store-banner")
        browser.execute_script("window.svcMarker = 7;")
        # Unbuffered: a buffered file would retry the short write at close
        # and raise ENOSPC a second time, out of the with statement.
        with open(disk / "junk", "wb", buffering=0) as junk:
            try:
                while True:
                    junk.write(b"\0" * 65536)
            except OSError:
                pass  # ENOSPC: the disk is full
        banner = wait.until(lambda d: d.find_elements(By.ID, "store-banner"))
        assert "database or disk is full" in banner[0].text, banner[0].text
        assert "since" in banner[0].text
        assert browser.execute_script("return window.svcMarker") == 7
        browser.save_screenshot(os.path.join(SHOTS, "dashboard-store-full.png"))
        os.unlink(disk / "junk")
        wait.until(lambda d: not d.find_elements(By.ID, "store-banner"))
        assert browser.execute_script("return window.svcMarker") == 7
    finally:
        if proc:
            proc.terminate()
            proc.wait(30)
        subprocess.run(["umount", "-l", str(disk)])
