#!/usr/bin/env bash
# pip_install.sh SOURCE_ROOT [PYTHON] — `pip install --no-build-isolation
# bindings/python` works offline (Debian's setuptools, --no-index) into a
# fresh venv, from a copy of the tree, and the installed svc serves and
# calls with nothing else on the path.
set -euo pipefail
src=$1 py=${2:-/usr/bin/python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src/bindings/python"
cp -r "$src/CMakeLists.txt" "$src/libsvc" "$tmp/src/"
(cd "$src/bindings/python" && cp -r setup.py ./*.c ./*.h svc "$tmp/src/bindings/python/")
"$py" -m venv --system-site-packages "$tmp/venv"
"$tmp/venv/bin/pip" install -q --no-build-isolation --no-index \
  "$tmp/src/bindings/python"
cd "$tmp"
env -u PYTHONPATH SVC_RUNTIME_DIR="$tmp" "$tmp/venv/bin/python" - <<'PY'
import os
import svc
assert svc.__file__.startswith(os.environ["SVC_RUNTIME_DIR"] + "/venv/"), svc.__file__
s = svc.Server("pipcheck")

@s.method
def twice(req):
    return bytes(req) * 2

s.listen("shm://pipcheck")
s.start()
with svc.Client("shm://pipcheck", timeout=5) as c:
    assert c.call("twice", b"ab") == b"abab"
    try:
        c.call("nothing")
    except svc.NoMethod:
        pass
s.close()
print("pip install: svc", svc.__version__, "from", os.path.dirname(svc.__file__))
PY
