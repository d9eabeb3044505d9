"""svc.Server: Python handlers called from Python and from C (the svc CLI)
over shm, unix and tcp, handler errors, what handlers may return, the GIL
on the server's threads, worker processes (fork, shared data, CPU scaling),
a killed server, and no reference or memory leak over 10^6 calls."""
import gc
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import svc
from helpers import peer_gone_after, unique_name, url_for

HERE = os.path.dirname(os.path.abspath(__file__))
PY_SERVER = os.path.join(HERE, "py_server.py")
SVC_CLI = os.environ.get("SVC_CLI", "svc")


class PyServer:
    """py_server.py in its own process; its stderr goes to a file."""

    def __init__(self, rundir, urls, name, extra=(), env=None):
        self.url = urls[0]
        self.name = name
        self.err_path = rundir / f"{name}.stderr"
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, PY_SERVER, name, *urls, *extra],
            stdout=subprocess.PIPE, stderr=self.err, text=True,
            env={**os.environ, **(env or {})})
        line = self.proc.stdout.readline()
        assert line.strip() == "READY", f"py_server said {line!r}"

    def stderr(self):
        self.err.flush()
        return self.err_path.read_text()

    def stop(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(10)
        self.err.close()
        return rc


@pytest.fixture(params=["shm", "unix", "tcp"])
def pyserver(request, rundir):
    name = unique_name(request.param)
    s = PyServer(rundir, [url_for(request.param, name, rundir)], name,
                 ["--max-msg", str(20 << 20)])
    yield s
    s.stop()


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 1 << 20, 16 << 20])
def test_python_to_python_every_size(pyserver, size):
    req = os.urandom(size)
    with svc.Client(pyserver.url, timeout=10, max_msg=20 << 20) as c:
        assert c.call("echo", req) == req
        assert c.call("big", str(size).encode()) == bytes(size)


def test_handler_exception_is_logged_and_the_server_keeps_serving(pyserver):
    with svc.Client(pyserver.url, timeout=5) as c:
        for _ in range(3):
            with pytest.raises(svc.HandlerError) as e:
                c.call("boom", b"bad input")
            assert e.value.code == svc.EHANDLER and e.value.handler_code == 0
            assert c.call("echo", b"still here") == b"still here"
    log = pyserver.stderr()
    assert "handler 'boom' raised" in log
    assert "ValueError: boom: bad input" in log and "Traceback" in log


def test_handler_error_code_reaches_python_and_c_clients(pyserver):
    with svc.Client(pyserver.url, timeout=5) as c:
        with pytest.raises(svc.HandlerError) as e:
            c.call("fail", b"42")
        assert e.value.handler_code == 42
    cli = subprocess.run([SVC_CLI, "call", pyserver.url, "fail", "7"],
                         capture_output=True, text=True, timeout=10)
    assert cli.returncode != 0
    assert "SVC_EHANDLER" in cli.stderr and "(code 7)" in cli.stderr
    assert "raised" not in pyserver.stderr()  # an answer, not a crash


def test_what_a_handler_may_return(pyserver):
    with svc.Client(pyserver.url, timeout=5) as c:
        assert c.call("returns", b"none") == b""
        assert c.call("returns", b"bytearray") == b"ba"
        assert c.call("returns", b"memoryview") == b"mv"
        with pytest.raises(svc.HandlerError):
            c.call("returns", b"str")
        assert c.call("echo", b"ok") == b"ok"
    assert "not str" in pyserver.stderr()


def test_a_kept_request_view_is_released_when_the_handler_returns(pyserver):
    with svc.Client(pyserver.url, timeout=5) as c:
        assert c.call("keep", b"secret") == b"kept"
        assert c.call("kept_state") == b"released"


def test_a_view_made_from_the_request_and_kept_is_an_error(pyserver):
    # regression: req[1:] shares the request's buffer, which is reused once
    # the handler returns; it went unnoticed
    with svc.Client(pyserver.url, timeout=5) as c:
        with pytest.raises(svc.HandlerError) as e:
            c.call("keep_slice", b"secret")
        assert e.value.code == svc.EHANDLER
        assert c.call("echo", b"fine") == b"fine"
    assert "outlived the handler" in pyserver.stderr()


def test_close_from_another_thread_stops_run(rundir):
    # regression: close() freed the server while run() still used it
    name = unique_name("close")
    s = svc.Server(name)
    s.add_method("echo", lambda req: req)
    s.listen(f"shm://{name}")
    t = threading.Thread(target=s.run)
    t.start()
    for _ in range(100):
        try:
            assert svc.Client(f"shm://{name}").call("echo", b"up") == b"up"
            break
        except svc.ConnectionRefused:
            time.sleep(0.02)
    s.close()
    t.join(10)
    assert not t.is_alive()
    with pytest.raises(svc.ConnectionRefused):
        svc.Client(f"shm://{name}")
    s.close()  # twice is fine


def test_c_client_calls_a_python_service(pyserver):
    cli = subprocess.run([SVC_CLI, "call", pyserver.url, "echo", "from C"],
                         capture_output=True, text=True, timeout=10)
    assert cli.returncode == 0 and cli.stdout.strip() == "from C"
    methods = subprocess.run([SVC_CLI, "methods", pyserver.url],
                             capture_output=True, text=True, timeout=10)
    assert "echo" in methods.stdout and "spin" in methods.stdout


def test_handlers_of_several_connections_overlap_when_they_wait(pyserver):
    # time.sleep releases the GIL: four 300 ms handlers take ~300 ms, not 1.2 s
    clients = [svc.Client(pyserver.url, timeout=5) for _ in range(4)]
    t0 = time.monotonic()
    threads = [threading.Thread(target=c.call, args=("sleep", b"300"))
               for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    for c in clients:
        c.close()
    assert elapsed < 0.9, f"handlers ran one after another ({elapsed:.2f} s)"


def test_pipelined_and_asyncio_calls(pyserver):
    import asyncio
    with svc.Client(pyserver.url, timeout=5) as c:
        want = {c.send("echo", str(i).encode()): str(i).encode()
                for i in range(32)}
        while want:
            call_id, reply = c.recv(timeout=5)
            assert want.pop(call_id) == reply

        async def many():
            return await asyncio.gather(
                *(c.acall("echo", bytes([i]) * i) for i in range(50)))
        assert asyncio.run(many()) == [bytes([i]) * i for i in range(50)]


@pytest.mark.parametrize("kind", ["shm", "unix", "tcp"])
def test_killed_python_server_is_peer_gone_within_100ms(rundir, kind):
    name = unique_name(kind)
    s = PyServer(rundir, [url_for(kind, name, rundir)], name)
    with svc.Client(s.url) as c:
        assert peer_gone_after(c, s.stop) < 0.1


def test_sigterm_stops_the_server_cleanly(rundir):
    name = unique_name("term")
    s = PyServer(rundir, [f"shm://{name}"], name)
    assert svc.Client(s.url).call("svc.ping") == b"pong"  # monitor readiness
    assert s.stop(signal.SIGTERM) == 0
    assert s.proc.stdout.read().strip() == "STOPPED"


def test_in_process_server_with_start_and_close(rundir):
    name = unique_name("inproc")
    server = svc.Server(name)

    @server.method
    def hello(req):
        return b"hello " + bytes(req)

    server.listen(f"shm://{name}")
    server.start()
    with pytest.raises(ValueError):
        server.add_method("late", hello)  # methods come before serving
    with svc.Client(f"shm://{name}", timeout=5) as c:
        assert c.call("hello", b"you") == b"hello you"
    server.close()
    with pytest.raises(svc.ConnectionRefused):
        svc.Client(f"shm://{name}")


def test_bad_arguments_are_errors_not_crashes(rundir):
    with pytest.raises(svc.Error) as e:
        svc.Server("no spaces allowed")
    assert e.value.code == svc.EINVAL
    s = svc.Server(unique_name("args"))
    with pytest.raises(TypeError):
        s.add_method("x", 42)
    with pytest.raises(svc.Error):
        s.add_method("svc.reserved", lambda r: r)
    with pytest.raises(ValueError):
        svc.Server("x", wait="sometimes")
    with pytest.raises(svc.Error):
        s.listen("bogus://nowhere")
    with pytest.raises(TypeError):
        s.run(workers="many")
    s.close()
    with pytest.raises(ValueError):
        s.listen("shm://x")


def rss_kb(pid="self"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_a_million_calls_leave_refcounts_and_rss_flat(rundir):
    name = unique_name("leak")
    server = svc.Server(name)
    reply = b"r" * 64

    @server.method
    def same(req):
        return reply

    @server.method
    def echo(req):
        return req

    server.listen(f"shm://{name}")
    server.start()
    req = b"q" * 64
    with svc.Client(f"shm://{name}", timeout=5) as c:
        def run(n):
            for _ in range(n):
                c.call("same", req)
                c.call("echo", req)
                with c.call_view("echo", req) as mv:
                    mv[0]
        run(20000)  # warm: the threads, their states, the caches
        gc.collect()
        refs = (sys.getrefcount(req), sys.getrefcount(reply),
                sys.getrefcount(same), sys.getrefcount(c))
        total = getattr(sys, "gettotalrefcount", lambda: 0)()
        objects = len(gc.get_objects())
        before = rss_kb()
        run(333334)  # 10^6 calls
        gc.collect()
        grown = rss_kb() - before
        assert (sys.getrefcount(req), sys.getrefcount(reply),
                sys.getrefcount(same), sys.getrefcount(c)) == refs
        assert abs(len(gc.get_objects()) - objects) < 100
        if total:  # a debug interpreter counts every reference
            assert abs(sys.gettotalrefcount() - total) < 100
        assert grown < 2048, f"RSS grew {grown} KiB over 10^6 calls"
    server.close()


def test_workers_share_data_and_serve_from_several_processes(rundir):
    name = unique_name("workers")
    s = PyServer(rundir, [f"shm://{name}"], name,
                 ["--workers", "2", "2", "--data", "10000"])
    try:
        clients = [svc.Client(s.url, timeout=5) for _ in range(4)]
        pids = {c.call("pid") for c in clients}
        assert len(pids) == 2 and str(s.proc.pid).encode() not in pids
        assert all(c.call("count") == b"10000" for c in clients)
        assert clients[0].call("get", b"77") == b"5929"
        with pytest.raises(svc.HandlerError) as e:
            clients[0].call("get", b"nope")
        assert e.value.handler_code == 1
        for c in clients:
            c.close()
    finally:
        assert s.stop(signal.SIGTERM) == 0


def test_the_environment_sets_the_worker_pool(rundir):
    # what svc-monitor's workers_min / workers_max pass
    name = unique_name("env")
    s = PyServer(rundir, [f"shm://{name}"], name,
                 env={"SVC_WORKERS_MIN": "2", "SVC_WORKERS_MAX": "2"})
    try:
        info = subprocess.run([SVC_CLI, "info", s.url], capture_output=True,
                              text=True, timeout=10).stdout
        assert any(line.split() == ["workers", "2"]
                   for line in info.splitlines()), info
    finally:
        assert s.stop(signal.SIGTERM) == 0


SPANNER = """
import sys, time, svc
c = svc.Client(sys.argv[1], timeout=30)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    print(c.call("span", b"300000").decode(), flush=True)
"""


def spans(url, nclients, seconds):
    """(pid, start, end, cpu) of every call that nclients callers made."""
    procs = [subprocess.Popen([sys.executable, "-c", SPANNER, url,
                               str(seconds)], stdout=subprocess.PIPE,
                              text=True) for _ in range(nclients)]
    out = []
    for p in procs:
        for line in p.communicate(timeout=60)[0].split("\n"):
            if line:
                pid, t0, t1, cpu = line.split()
                out.append((int(pid), float(t0), float(t1), float(cpu)))
    return out


def parallel_pairs(calls):
    """Pairs of calls from two processes that overlapped for at least half
    of the shorter one while each got at least 80% of a core: they ran at
    the same time on two cores, which one process with a GIL cannot."""
    found = 0
    for k, a in enumerate(calls):
        for b in calls[k + 1:]:
            if a[0] == b[0]:
                continue
            overlap = min(a[2], b[2]) - max(a[1], b[1])
            shorter = min(a[2] - a[1], b[2] - b[1])
            if (shorter > 0 and overlap >= shorter / 2 and
                    a[3] >= 0.8 * (a[2] - a[1]) and
                    b[3] >= 0.8 * (b[2] - b[1])):
                found += 1
    return found


def test_two_workers_run_cpu_bound_handlers_in_parallel(rundir):
    # The property, not a speed: with two workers, CPU-bound handlers run
    # at the same time in two processes, each with a core of its own (its
    # thread's CPU time keeps up with the wall clock). A throughput ratio
    # on this 2-vCPU VM, with the callers competing for the same cores,
    # drifted between 1.44x and 1.9x from run to run.
    servers = {}
    try:
        for n in (1, 2):
            name = unique_name(f"cpu{n}")
            servers[n] = PyServer(rundir, [f"unix://{rundir}/{name}.sock"],
                                  name, ["--workers", str(n), str(n)])
        one = spans(servers[1].url, nclients=2, seconds=1.5)
        assert len({c[0] for c in one}) == 1
        assert parallel_pairs(one) == 0
        for _ in range(3):  # a busy spell of the VM may take a core away
            two = spans(servers[2].url, nclients=2, seconds=1.5)
            pairs = parallel_pairs(two)
            print(f"2 workers: {len(two)} calls from "
                  f"{len({c[0] for c in two})} processes, {pairs} pairs "
                  f"in parallel")
            if pairs:
                break
        assert len({c[0] for c in two}) == 2
        assert pairs > 0
    finally:
        for s in servers.values():
            s.stop(signal.SIGTERM)
