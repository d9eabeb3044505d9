"""examples/python: kv_service.py serves its data from two workers that
share it (client.py checks values and shows each worker's memory), and
svc-monitor runs it from an .ini entry like a C service: svc.ping
readiness, SVC_WORKERS_MIN/MAX, workers listed, a restart."""
import json
import os
import re
import subprocess
import sys
import threading
import urllib.request

import svc
from helpers import free_port, wait_for

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
EXAMPLES = os.path.join(ROOT, "examples", "python")
MONITOR = os.environ.get("SVC_MONITOR", "svc-monitor")


def pinged(url):
    try:
        return svc.Client(url, timeout=1).call("svc.ping") == b"pong"
    except svc.Error:
        return False


def test_kv_service_shares_its_data_between_two_workers(rundir):
    name = f"pykv{os.getpid()}"
    env = {**os.environ, "KV_MB": "16", "SVC_WORKERS_MIN": "2",
           "SVC_WORKERS_MAX": "2", "SVC_SERVICE_PORT": str(free_port())}
    proc = subprocess.Popen([sys.executable, os.path.join(EXAMPLES, "kv_service.py"),
                             name], env=env, stdout=subprocess.PIPE, text=True)
    try:
        wait_for("kv_service", lambda: pinged(f"shm://{name}"))
        out = subprocess.run([sys.executable, os.path.join(EXAMPLES, "client.py"),
                              f"shm://{name}"], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert "missing key: HandlerError, code 1" in out.stdout
        workers = re.findall(r"worker (\d+): RSS (\d+) MiB, PSS (\d+) MiB, "
                             r"its own (\d+) MiB", out.stdout)
        assert len(workers) == 2, out.stdout
        for _, rss, pss, own in workers:
            # 16 MiB of values plus the index, mostly shared with the master
            assert int(own) < int(rss) // 2, out.stdout
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def http_json(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return json.loads(r.read())


def test_svc_monitor_runs_the_python_service_from_an_ini_entry(rundir):
    pkg = os.environ["PYTHONPATH"].split(os.pathsep)[0]
    ini = rundir / "py.ini"
    ini.write_text(f"""
[monitor]
http = 127.0.0.1:0
db = {rundir}/m.sqlite
log_dir = {rundir}/logs
sample_interval_ms = 200
token_file = {rundir}/token

[service.pykvmon]
command = {sys.executable} {EXAMPLES}/kv_service.py
env = PYTHONPATH={pkg} KV_MB=8
port = {free_port()}
workers_min = 2
workers_max = 2
""")
    mon = subprocess.Popen([MONITOR, "--config", str(ini)],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True, cwd=rundir)
    announced = []

    def read_stdout():  # "svc-monitor: dashboard at http://H:P/ ..."
        for line in mon.stdout:
            m = re.search(r"dashboard at http://127\.0\.0\.1:(\d+)/", line)
            if m:
                announced.append(int(m.group(1)))
    threading.Thread(target=read_stdout, daemon=True).start()
    try:
        port = wait_for("the dashboard's port", lambda: announced and announced[0])

        def running():
            s = next(x for x in http_json(port, "/api/services")["services"]
                     if x["name"] == "pykvmon")
            return s if s["state"] == "RUNNING" and s["workers"] == 2 else None
        state = wait_for("pykvmon RUNNING with 2 workers", running)
        with svc.Client("shm://pykvmon", timeout=5) as c:
            assert c.call("get", b"key:3") == b"00000003" * (8 + 3 % 7 * 8)
        with svc.Client(f"tcp://127.0.0.1:{state['port']}", timeout=5) as c:
            assert int(c.call("count")) > 0
        first_pid = state["pid"]
        token = (rundir / "token").read_text().strip()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/services/pykvmon/restart",
            method="POST", headers={"Authorization": f"Bearer {token}"})
        urllib.request.urlopen(req, timeout=5).read()
        def restarted():
            s = running()
            return s and s["pid"] != first_pid
        wait_for("a restarted pykvmon", restarted)
    finally:
        mon.terminate()
        mon.wait(20)
