"""setup.py — `pip install --no-build-isolation bindings/python` builds the
svc package offline with Debian's setuptools: the extension and libsvc's
sources compiled into it (no separate libsvc to install), as CMake does."""
import os
import re

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
LIBSVC = os.path.join(ROOT, "libsvc")


def version():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        return re.search(r"project\(svc VERSION ([0-9.]+)", f.read()).group(1)


def libsvc_sources():
    with open(os.path.join(LIBSVC, "CMakeLists.txt")) as f:
        listed = re.search(r"set\(SVC_SOURCES(.*?)\)", f.read(), re.S).group(1)
    return [os.path.join(LIBSVC, s) for s in listed.split()]


VERSION = version()
setup(
    name="svc",
    version=VERSION,
    description="Call functions in another process at shared-memory speed "
                "(libsvc for Python)",
    packages=["svc"],
    package_data={"svc": ["__init__.pyi", "py.typed"]},
    ext_modules=[Extension(
        "svc._svc",
        sources=[os.path.join(HERE, f)
                 for f in ("svcmodule.c", "client.c", "server.c")]
        + libsvc_sources(),
        include_dirs=[os.path.join(LIBSVC, "include"),
                      os.path.join(LIBSVC, "src")],
        define_macros=[("_GNU_SOURCE", None), ("SVC_BUILDING", None),
                       ("SVC__VERSION_STRING", f'"{VERSION}"')],
        extra_compile_args=["-std=gnu11", "-fvisibility=hidden"],
        extra_link_args=["-pthread"],
        libraries=["ssl", "crypto"],  # tls:// (Debian's libssl-dev)
    )],
    python_requires=">=3.9",
)
