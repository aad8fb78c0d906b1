#!/usr/bin/env bash
# bench/servers/uws/build.sh SRC_DIR: builds echo-uws and chat-uws (echo.cpp and chat.cpp
# here) against uWebSockets into bench/target/uws/, where bench/run finds them.
#
# SRC_DIR is a uWebSockets source folder with uSockets in its uSockets/ subfolder (as a
# recursive clone has it). The sources are never committed to this repository; get them, e.g.
#   git clone --recursive --branch v20.79.0 https://github.com/uNetworking/uWebSockets /tmp/uws
#   bench/servers/uws/build.sh /tmp/uws
# The build is g++/gcc -O3 -flto, no SSL (LIBUS_NO_SSL), no permessage-deflate (UWS_NO_ZLIB:
# neither zlib nor its headers are needed), no -march=native (the Rust servers are not built
# for the native CPU either), uSockets' default epoll loop.
#
# Environment: CC (gcc), CXX (g++), JOBS (LTO link jobs, default 1: a shared 2-core
# machine), UWS_VERSION (the version bench/run's report names; default `git describe` of
# SRC_DIR if it is a git checkout, else the folder's name).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bench=$(dirname "$(dirname "$here")")
out=$bench/target/uws

die() { echo "build.sh: $*" >&2; exit 1; }

[[ $# == 1 ]] || die "usage: bench/servers/uws/build.sh UWEBSOCKETS_SRC_DIR"
src=$(cd "$1" 2>/dev/null && pwd) || die "no folder $1"
[[ -f $src/src/App.h ]] || die "$src is not a uWebSockets source folder (no src/App.h)"
[[ -f $src/uSockets/src/libusockets.h ]] ||
    die "no uSockets in $src/uSockets (clone uWebSockets with --recursive, or put a uSockets checkout there)"
cc=${CC:-gcc} cxx=${CXX:-g++} jobs=${JOBS:-1}
for tool in "$cc" "$cxx"; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install g++)"
done
version=${UWS_VERSION:-$(git -C "$src" describe --tags 2>/dev/null || basename "$src")}

obj=$out/obj
rm -rf "$obj" && mkdir -p "$obj"
flags=(-O3 "-flto=$jobs" -DLIBUS_NO_SSL)
echo "== uSockets ($src/uSockets)" >&2
# The C files uSockets' Makefile builds without SSL; io_uring's and the other event loops'
# compile to nothing unless selected.
(cd "$obj" && "$cc" "${flags[@]}" -std=c11 -I"$src/uSockets/src" -c \
    "$src"/uSockets/src/*.c "$src"/uSockets/src/eventing/*.c "$src"/uSockets/src/crypto/*.c \
    "$src"/uSockets/src/io_uring/*.c)
for name in echo chat; do
    echo "== $name-uws" >&2
    "$cxx" "${flags[@]}" -std=c++2b -DUWS_NO_ZLIB -I"$src/src" -I"$src/uSockets/src" -I"$here" \
        "$here/$name.cpp" "$obj"/*.o -o "$out/$name-uws.tmp"
    mv "$out/$name-uws.tmp" "$out/$name-uws"
done
rm -rf "$obj"
echo "$version" >"$out/VERSION"
echo "== built $out/echo-uws and $out/chat-uws (uWebSockets $version)" >&2
