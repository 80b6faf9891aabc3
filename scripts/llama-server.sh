#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` (CPU only) and a tiny random-weight model for the real-engine
# tests (test/e2e/llamacpp.test.ts), and caches both outside the repository, keyed by version:
#
#   ${SWITCHYARD_LLAMACPP_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/switchyard/llama-server-node-llama-cpp-<version>}/
#     llama-server      the binary (static: -DBUILD_SHARED_LIBS=OFF, so it needs nothing beside it)
#     tiny-llama.gguf   the model made by scripts/tiny-gguf.py (same bytes every time)
#     build-info.txt    the llama.cpp commit, the options and how long the build took
#
# The source is the llama.cpp tree that the npm package node-llama-cpp carries as a git bundle
# (llama/gitRelease.bundle), so nothing but the npm registry (and Debian's apt for cmake, g++,
# python3-numpy when missing) is needed. Each part is made only when missing from the cache; a
# cached binary is never rebuilt. The build takes 8 to 16 minutes on 2 cores.
#
# Usage: scripts/llama-server.sh         make what is missing, then print the cache directory
#        scripts/llama-server.sh --dir   print the cache directory only
set -euo pipefail

# Keep in step with LLAMACPP_PACKAGE_VERSION in test/helpers/llamacpp.ts.
NODE_LLAMA_CPP_VERSION=3.21.1
# Bump when scripts/tiny-gguf.py changes what it writes.
MODEL_NAME=tiny-llama-v1.gguf

repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${SWITCHYARD_LLAMACPP_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/switchyard/llama-server-node-llama-cpp-$NODE_LLAMA_CPP_VERSION}"
if [ "${1:-}" = "--dir" ]; then echo "$cache"; exit 0; fi

say() { printf '[llama-server.sh] %s\n' "$*" >&2; }

mkdir -p "$cache"
# One maker at a time: a second caller waits, then finds the cache full.
exec 9>"$cache/.lock"
flock 9

need_binary=1; [ -x "$cache/llama-server" ] && need_binary=0
need_model=1; [ -s "$cache/$MODEL_NAME" ] && need_model=0
if [ "$need_binary" = 0 ] && [ "$need_model" = 0 ]; then
  say "cached: $cache"
  echo "$cache"
  exit 0
fi

apt_install() {
  say "installing Debian packages: $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# python3 with numpy: Debian's python3-numpy lands in /usr/bin/python3, which may not be the
# python3 first on PATH (pyenv and the like).
find_python() {
  for py in python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import numpy' >/dev/null 2>&1; then
      command -v "$py"; return 0
    fi
  done
  return 1
}

work="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-llamacpp.XXXXXX")"
trap 'rm -rf "$work"' EXIT

say "fetching node-llama-cpp@$NODE_LLAMA_CPP_VERSION from the npm registry"
(cd "$work" && npm pack --silent "node-llama-cpp@$NODE_LLAMA_CPP_VERSION" >/dev/null)
tar -xzf "$work/node-llama-cpp-$NODE_LLAMA_CPP_VERSION.tgz" -C "$work" package/llama/gitRelease.bundle
command -v git >/dev/null 2>&1 || apt_install git ca-certificates
git clone --quiet "$work/package/llama/gitRelease.bundle" "$work/llama.cpp" 2>/dev/null
commit="$(git -C "$work/llama.cpp" rev-parse HEAD)"
say "llama.cpp commit $commit"

if [ "$need_binary" = 1 ]; then
  missing=()
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  command -v g++ >/dev/null 2>&1 || missing+=(g++)
  command -v make >/dev/null 2>&1 || missing+=(make)
  if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi
  options=(
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF
    -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DLLAMA_OPENSSL=OFF
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
  )
  generator=(); command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
  say "building llama-server (CPU, Release, -j2): 8 to 16 minutes on 2 cores"
  started=$SECONDS
  cmake -S "$work/llama.cpp" -B "$work/build" "${generator[@]}" "${options[@]}" >"$work/cmake.log" 2>&1 \
    || { cat "$work/cmake.log" >&2; exit 1; }
  cmake --build "$work/build" --target llama-server -j 2 >"$work/build.log" 2>&1 \
    || { tail -n 60 "$work/build.log" >&2; exit 1; }
  seconds=$((SECONDS - started))
  "$work/build/bin/llama-server" --version >"$work/version.txt" 2>&1 || true
  {
    echo "node-llama-cpp $NODE_LLAMA_CPP_VERSION"
    echo "llama.cpp commit $commit"
    grep -m1 -i version "$work/version.txt" || true
    echo "cmake options: ${options[*]}"
    echo "build seconds (2 jobs): $seconds"
  } >"$cache/build-info.txt"
  install -m 0755 "$work/build/bin/llama-server" "$cache/llama-server.tmp"
  mv -f "$cache/llama-server.tmp" "$cache/llama-server"
  say "built in ${seconds}s: $cache/llama-server"
fi

if [ "$need_model" = 1 ]; then
  python="$(find_python)" || { apt_install python3 python3-numpy; python="$(find_python)"; }
  PYTHONPATH="$work/llama.cpp/gguf-py" "$python" "$repo/scripts/tiny-gguf.py" \
    --vocab "$work/llama.cpp/models/ggml-vocab-llama-spm.gguf" --out "$cache/$MODEL_NAME.tmp" >&2
  mv -f "$cache/$MODEL_NAME.tmp" "$cache/$MODEL_NAME"
  say "model: $cache/$MODEL_NAME ($(stat -c %s "$cache/$MODEL_NAME") bytes)"
fi

echo "$cache"
