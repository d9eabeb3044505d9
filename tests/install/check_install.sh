#!/usr/bin/env bash
# check_install.sh BUILD_DIR — installs BUILD_DIR into a temporary prefix and
# builds a consumer against it twice: with `pkg-config --cflags --libs svc`
# and with CMake's find_package(svc). Run by ctest as install.consumer.
set -euo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
lib=$(find "$tmp/prefix" -name 'libsvc.so*' -printf '%h\n' | head -n1)
export PKG_CONFIG_PATH=$lib/pkgconfig
# shellcheck disable=SC2046
cc "$here/consumer.c" -o "$tmp/by-pkgconfig" $(pkg-config --cflags --libs svc) \
  -Wl,-rpath,"$lib"
"$tmp/by-pkgconfig" | grep -q 'SVC_ETOOBIG'
cmake -S "$here" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cmake" >/dev/null
"$tmp/cmake/consumer" | grep -q 'SVC_ETOOBIG'
echo "install: header, libraries, svc.pc and svcConfig.cmake work"
