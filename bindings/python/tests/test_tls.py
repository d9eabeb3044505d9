"""tls:// from Python: the URL's parameters pass through unchanged, and a
refused handshake or key file is an exception whose message says why
(libsvc's svc_client_open_ex / svc_server_last_error_text sentence)."""
import os
import shutil
import subprocess

import pytest

import svc
from helpers import free_port, unique_name
from test_client import Server

MAKE_CERTS = os.path.join(os.path.dirname(__file__), "..", "..", "..",
                          "tests", "helpers", "make-certs.sh")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(["bash", MAKE_CERTS, str(d)], check=True)
    return str(d)


@pytest.fixture
def tls_server(certs):
    port = free_port()
    s = Server(f"tls://127.0.0.1:{port}?cert={certs}/server.pem"
               f"&key={certs}/server.key", unique_name("tls"))
    yield port
    s.stop()


def test_echo_over_tls(certs, tls_server):
    with svc.Client(f"tls://127.0.0.1:{tls_server}?ca={certs}/ca.pem",
                    timeout=10) as c:
        for n in (0, 1, 64, 16385, 1 << 20):
            data = os.urandom(n)
            assert c.call("echo", data) == data


def test_an_untrusted_server_is_a_tls_error_that_says_why(certs, tls_server):
    with pytest.raises(svc.TLSError) as e:
        svc.Client(f"tls://127.0.0.1:{tls_server}?ca={certs}/other-ca.pem")
    assert e.value.code == svc.ETLS
    assert "certificate verify failed" in str(e.value)


def test_a_key_readable_by_others_is_refused_at_listen(certs, tmp_path):
    key = tmp_path / "open.key"
    shutil.copy(f"{certs}/server.key", key)
    os.chmod(key, 0o644)
    s = svc.Server(unique_name("tlskey"))
    with pytest.raises(svc.PermissionDenied) as e:
        s.listen(f"tls://127.0.0.1:{free_port()}?cert={certs}/server.pem"
                 f"&key={key}")
    assert "chmod 600" in str(e.value)
