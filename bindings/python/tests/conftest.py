"""What the binding's tests share: a private runtime directory (the shm://
rendezvous sockets) and small helpers, importable as `helpers`."""
import os

import pytest


@pytest.fixture(scope="module")
def rundir(tmp_path_factory):
    d = tmp_path_factory.mktemp("svc-run")
    os.environ["SVC_RUNTIME_DIR"] = str(d)
    return d
