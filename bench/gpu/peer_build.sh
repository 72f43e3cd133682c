#!/usr/bin/env bash
# peer_build.sh: builds llama.cpp's CUDA llama-bench and llama-server (sm_90) from
# .cudawt/llama.tar.xz (llama.cpp as bundled in the npm package node-llama-cpp; docs/gpu-notes.md)
# into build/peers/llama-cuda, once per warm machine. The archive (~5 MB; .cudawt/ is ignored):
#   cd /tmp && npm pack node-llama-cpp@3.22.1 && tar xzf node-llama-cpp-3.22.1.tgz &&
#   git clone -q package/llama/gitRelease.bundle llama.cpp && tar cJf llama.tar.xz \
#     --exclude=llama.cpp/{.git,models,docs,media,benches,tools/ui/src,tools/ui/static,tools/ui/tests} \
#     --exclude=llama.cpp/ggml/src/ggml-{sycl,opencl,hexagon,vulkan,metal,et} llama.cpp
# (bash brace expansion makes one --exclude per name). `peer_build.sh --background` starts the
# build and returns at once; a later plain call waits for it. Exit 0 when both binaries exist.
set -u
B=build/peers/llama-cuda L=build/peers/llama.cpp
ready() { [ -x $B/bin/llama-bench ] && [ -x $B/bin/llama-server ]; }
ready && exit 0
if [ "${1:-}" = --background ]; then
    [ -f /tmp/llama_build.pid ] && kill -0 "$(cat /tmp/llama_build.pid)" 2>/dev/null && exit 0
    # its own session (setsid): the device tool ends a call's processes when the call returns,
    # all but those in a new session, so the build goes on into the next call on a warm machine
    setsid nohup "$0" >/tmp/llama_build.out 2>&1 </dev/null &
    echo $! >/tmp/llama_build.pid
    exit 0
fi
if [ -f /tmp/llama_build.pid ] && [ "$(cat /tmp/llama_build.pid)" != $$ ] && kill -0 "$(cat /tmp/llama_build.pid)" 2>/dev/null; then
    while kill -0 "$(cat /tmp/llama_build.pid)" 2>/dev/null; do sleep 1; done  # a background build: wait for it
    ready && exit 0
    echo "peer_build: the background build failed:"; tail -20 /tmp/llama_build.log; exit 1
fi
T0=$(date +%s)
mkdir -p build/peers && { [ -d $L ] || tar xJf .cudawt/llama.tar.xz -C build/peers; }
# Older npm packages leave out scripts/ui-assets.cmake (the server's web page, fetched or built
# with npm): a stand-in makes an empty page, so llama-server builds; its HTTP API is unchanged.
# Newer ones (3.22.1) have it: with the prebuilt page off and no page build it embeds no page.
if [ ! -f $L/scripts/ui-assets.cmake ]; then
    mkdir -p $L/scripts
    cat >$L/scripts/ui_stub.h <<'H'
#pragma once
#include <cstddef>
#include <string>
#include <vector>
struct llama_ui_asset { std::string name, type, etag; const unsigned char *data; size_t size; };
const std::vector<llama_ui_asset> &llama_ui_get_assets();
const llama_ui_asset *llama_ui_find_asset(const std::string &name);
bool llama_ui_use_gzip();
H
    cat >$L/scripts/ui_stub.cpp <<'C'
#include "ui.h"
static const unsigned char page[] = "<!doctype html><title>llama-server</title>";
const std::vector<llama_ui_asset> &llama_ui_get_assets() {
    static const std::vector<llama_ui_asset> a = {{"index.html", "text/html", "\"0\"", page, sizeof page - 1}};
    return a;
}
const llama_ui_asset *llama_ui_find_asset(const std::string &name) {
    for (const auto &x : llama_ui_get_assets()) if (x.name == name) return &x;
    return nullptr;
}
bool llama_ui_use_gzip() { return false; }
C
    echo 'configure_file("${LLAMA_SOURCE_DIR}/scripts/ui_stub.h" "${UI_BINARY_DIR}/ui.h" COPYONLY)
configure_file("${LLAMA_SOURCE_DIR}/scripts/ui_stub.cpp" "${UI_BINARY_DIR}/ui.cpp" COPYONLY)' >$L/scripts/ui-assets.cmake
fi
cmake -S $L -B $B -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DGGML_NATIVE=ON -DCMAKE_BUILD_TYPE=Release >/tmp/llama_cmake.log 2>&1 ||
    { tail -20 /tmp/llama_cmake.log; exit 1; }
nice cmake --build $B --target llama-bench llama-server -j "${J:-$(nproc)}" >/tmp/llama_build.log 2>&1 || { tail -30 /tmp/llama_build.log; exit 1; }
echo "peer_build: llama-bench and llama-server built in $(( $(date +%s) - T0 )) s"
ready
