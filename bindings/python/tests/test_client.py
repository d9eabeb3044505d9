"""The Python client against the C test server (tests/helpers/test_server.c)
over shm, unix and tcp: sizes up to 16 MiB, replies read in place, every
error class, calls in flight, asyncio, a killed server, and the GIL
released while a call waits."""
import asyncio
import os
import subprocess
import threading
import time

import pytest

import svc
from helpers import peer_gone_after, unique_name, url_for

SERVER = os.environ.get("SVC_TEST_SERVER", "test_server")


class Server:
    def __init__(self, url, name, extra=(), env=None):
        self.url = url
        self.proc = subprocess.Popen(
            [SERVER, "--name", name, "--listen", url, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=env)
        line = self.proc.stdout.readline()
        assert line.strip() == "READY", f"test_server said {line!r}"

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(params=["shm", "unix", "tcp"])
def server(request, rundir):
    name = unique_name(request.param)
    s = Server(url_for(request.param, name, rundir), name,
               ["--max-msg", str(20 << 20)])
    yield s
    s.stop()


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 1 << 20, 16 << 20])
def test_echo_every_size(server, size):
    req = os.urandom(size)
    with svc.Client(server.url, timeout=10, max_msg=20 << 20) as c:
        assert c.call("echo", req) == req
        assert c.call("echo", bytearray(req)) == req  # any buffer works
        assert c.call("echo", memoryview(req)) == req


def test_call_view_reads_in_place_until_the_next_call(server):
    with svc.Client(server.url) as c:
        mv = c.call_view("echo", b"hello")
        assert bytes(mv) == b"hello" and mv.readonly
        with pytest.raises(BufferError):
            c.call("echo", b"x")  # the view would point at a reused reply
        mv.release()
        assert c.call("echo", b"again") == b"again"


def test_reinit_while_a_view_is_alive_keeps_the_connection(server):
    # regression: __init__ closed the connection under a live view
    with svc.Client(server.url) as c:
        mv = c.call_view("echo", b"still mapped")
        with pytest.raises(BufferError):
            c.__init__(server.url)
        assert bytes(mv) == b"still mapped"
        mv.release()
        c.__init__(server.url)
        assert c.call("echo", b"reopened") == b"reopened"


def test_every_error_class(server, rundir):
    with svc.Client(server.url, timeout=0.2, max_msg=1024) as c:
        with pytest.raises(svc.NoMethod) as e:
            c.call("no-such-method")
        assert e.value.code == svc.ENOMETHOD and e.value.name == "SVC_ENOMETHOD"
        with pytest.raises(svc.HandlerError) as e:
            c.call("fail", b"7")
        assert e.value.handler_code == 7
        with pytest.raises(svc.TimedOut):
            c.call("sleep", b"1000")
        with pytest.raises(svc.TooBig):
            c.call("echo", bytes(2048))
        assert isinstance(e.value, svc.Error)
    with pytest.raises(svc.ConnectionRefused):
        svc.Client(f"unix://{rundir}/nobody-listens.sock").call("echo")
    with pytest.raises(svc.Error) as e:
        svc.Client("bogus://x")
    assert e.value.code == svc.EINVAL


def test_calls_in_flight(server):
    with svc.Client(server.url) as c:
        want, blocked = {}, 0

        def receive_one():
            done = c.recv(timeout=5)
            assert done is not None
            call_id, reply = done
            assert want.pop(call_id) == reply

        for i in range(200):
            req = str(i).encode() * (i % 50 + 1)
            while True:
                try:
                    want[c.send("echo", req)] = req
                    break
                except svc.WouldBlock:  # the window (64) is full
                    blocked += 1
                    receive_one()
        while want:
            receive_one()
        assert blocked > 0
        assert c.recv(timeout=0) is None  # nothing in flight


def test_a_failed_call_in_flight_names_itself(server):
    with svc.Client(server.url) as c:
        ok = c.send("echo", b"fine")
        bad = c.send("fail", b"3")
        results = {}
        for _ in range(2):
            try:
                call_id, reply = c.recv(timeout=5)
                results[call_id] = reply
            except svc.HandlerError as e:
                results[e.call_id] = e.handler_code
        assert results == {ok: b"fine", bad: 3}


def test_asyncio_helper(server):
    async def main():
        with svc.Client(server.url) as c:
            reqs = [os.urandom(i * 100) for i in range(20)]
            replies = await asyncio.gather(*(c.acall("echo", r) for r in reqs))
            assert replies == reqs
            with pytest.raises(svc.HandlerError):
                await c.acall("fail", b"5")
    asyncio.run(main())


def test_gil_is_released_while_a_call_waits(server):
    ticks = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)

    t = threading.Thread(target=spin)
    t.start()
    with svc.Client(server.url) as c:
        before = len(ticks)
        assert c.call("sleep", b"300") == b"ok"
        during = len(ticks) - before
    stop.set()
    t.join()
    assert during > 50, "the other thread did not run while the call waited"


def test_killed_server_is_peer_gone_within_100ms(server):
    with svc.Client(server.url) as c:
        assert peer_gone_after(c, server.stop) < 0.1


def test_closed_client_refuses_calls(server):
    c = svc.Client(server.url)
    c.close()
    with pytest.raises(ValueError):
        c.call("echo")
    c.close()  # twice is fine


def test_garbage_from_the_peer_is_a_protocol_error():
    import socket
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def garbage():
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(b"\xff" * 64)  # no frame starts like this
        conn.recv(4096)  # until the client gives up
        conn.close()

    t = threading.Thread(target=garbage)
    t.start()
    with pytest.raises(svc.ProtocolError) as e:
        svc.Client(f"tcp://127.0.0.1:{port}", timeout=5).call("echo", b"x")
    assert e.value.code == svc.EPROTO
    t.join(5)
    listener.close()


CALL_AS_NOBODY = """
import sys, svc
try:
    svc.Client(sys.argv[1], timeout=5).call("echo", b"x")
    print("served")
except svc.PermissionDenied as e:
    print("refused", e.code == svc.EPERM)
"""


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run as another uid")
@pytest.mark.parametrize("kind", ["shm", "unix"])
def test_a_peer_of_another_uid_is_permission_denied(kind):
    import shutil
    import sys
    import tempfile
    d = tempfile.mkdtemp(prefix="svc-uid.")  # not under pytest's 0700 tree
    os.chmod(d, 0o755)
    env = {**os.environ, "SVC_RUNTIME_DIR": d}
    name = unique_name(kind)
    url = url_for(kind, name, d)
    s = Server(url, name, env=env)
    try:
        os.chmod(os.path.join(d, f"{name}.sock"), 0o777)  # SO_PEERCRED decides
        out = subprocess.run(
            [sys.executable, "-c", CALL_AS_NOBODY, url], env=env,
            capture_output=True, text=True, timeout=30, user=65534,
            group=65534, extra_groups=[])
        assert out.stdout.strip() == "refused True", out.stderr
    finally:
        s.stop()
        shutil.rmtree(d, ignore_errors=True)
