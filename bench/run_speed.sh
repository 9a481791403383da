#!/usr/bin/env bash
# Build tq_bench (Release, bench on, Python off) and run the speed benchmark (bench/speed.cpp).
# Usage: bench/run_speed.sh [tq_bench options: --quick --no-dram --dram-n N --threads 1,2 --filter S
#                            --simd-compare ...]
# Env: BUILD_DIR (default build-bench), TQ_SIMD=scalar|avx2|avx512 to cap the SIMD level.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build-bench}"
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTQ_BUILD_BENCH=ON -DTQ_BUILD_PYTHON=OFF \
    -DTQ_BUILD_TESTS=OFF >/dev/null
fi
ninja -C "$build" tq_bench >/dev/null
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git -C "$root" rev-parse --short HEAD) load: $(cut -d' ' -f1-3 /proc/loadavg)"
exec "$build/tq_bench" "$@"
