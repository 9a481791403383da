#!/usr/bin/env bash
# Shared set-up for scripts/tq and scripts/test: install missing Debian packages (idempotent),
# then configure and build incrementally. Sourced, not executed.
TQ_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TQ_DEBS=(build-essential cmake ninja-build pkg-config libcli11-dev libeigen3-dev libhdf5-dev libfmt-dev
         libtomlplusplus-dev doctest-dev libboost-math-dev nlohmann-json3-dev libbenchmark-dev
         pybind11-dev python3-dev python3-venv libomp-dev)

tq_log() { if [ -n "${TQ_VERBOSE:-}" ]; then echo "tq-setup: $*" >&2; fi; }

tq_install_deps() {
  local missing=() p
  for p in "${TQ_DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "tq-setup: installing Debian packages: ${missing[*]}" >&2
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 && sudo="sudo" || {
      echo "tq-setup: missing packages (${missing[*]}) and not root: install them with apt-get" >&2; return 1; }
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "tq-setup: missing packages (${missing[*]}) and no apt-get: install their equivalents" >&2; return 1
  fi
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >/tmp/tq-apt.log 2>&1 || { echo "tq-setup: apt-get install failed (see /tmp/tq-apt.log): ${missing[*]}" >&2; return 1; }
}

# tq_build BUILD_DIR [cmake args...]: configure once, then build incrementally (quiet when up to date).
tq_build() {
  local dir="$1"; shift
  local gen=()
  command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
  if [ ! -f "$dir/CMakeCache.txt" ]; then
    cmake -S "$TQ_ROOT" -B "$dir" "${gen[@]}" "$@" >"$dir.configure.log" 2>&1 || {
      cat "$dir.configure.log" >&2; echo "tq-setup: cmake configure failed" >&2; return 1; }
  fi
  local jobs; jobs="$(nproc 2>/dev/null || echo 2)"
  cmake --build "$dir" -j "$jobs" >"$dir.build.log" 2>&1 || {
    tail -n 60 "$dir.build.log" >&2; echo "tq-setup: build failed (full log: $dir.build.log)" >&2; return 1; }
}
