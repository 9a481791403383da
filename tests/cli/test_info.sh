#!/usr/bin/env bash
# `tq info`: the facts it reports agree with independent sources (the --version line, the HDF5
# headers' own version via h5cc/pkg-config when present, TQ_SIMD, --threads).
set -uo pipefail
: "${TQ_BIN:?TQ_BIN must name the tq binary}"
command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 not found"; exit 77; }

. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tq_cli_setup info

# prop KEY [tq args...]: the value of one info property from the JSON output
prop() {
  local key="$1"; shift
  "$TQ_BIN" info --format json "$@" | python3 -c '
import json, sys
rows = {r["property"]: r["value"] for r in json.load(sys.stdin)["info"]}
print(rows[sys.argv[1]])' "$key"
}

version_line="$("$TQ_BIN" --version)"
check "info version matches --version" test "tq $(prop version) (git $(prop git_commit), $(prop build_type), $(prop compiler))" = "$version_line"
simd="$(prop simd)"
check "simd is one of scalar/avx2/avx512 (got $simd)" bash -c '[[ "$1" =~ ^(scalar|avx2|avx512)$ ]]' _ "$simd"
check "TQ_SIMD=scalar lowers the level" test "$(TQ_SIMD=scalar prop simd)" = scalar
check "TQ_SIMD=scalar leaves the detected level alone" test "$(TQ_SIMD=scalar prop simd_detected)" = "$(prop simd_detected)"
TQ_SIMD=bogus "$TQ_BIN" info >/dev/null 2>"$work/err"
rc=$?
check "a bad TQ_SIMD exits 1 naming the variable" test "$rc" -eq 1 -a "$(grep -c '^tq: .*TQ_SIMD' "$work/err")" -eq 1
# The level must agree with /proc/cpuinfo flags where that file exists (Linux x86).
if [ -r /proc/cpuinfo ] && grep -q '^flags' /proc/cpuinfo; then
  flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
  has() { [[ "$flags" == *" $1 "* ]]; }
  expected=scalar
  if has avx2 && has fma && has f16c && has bmi2; then
    expected=avx2
    if has avx512f && has avx512bw && has avx512dq && has avx512vl; then expected=avx512; fi
  fi
  check "simd_detected agrees with /proc/cpuinfo ($expected)" test "$(prop simd_detected)" = "$expected"
fi
check "--threads 1 gives openmp_max_threads 1" test "$(prop openmp_max_threads --threads 1)" = 1
check "openmp_max_threads defaults to all cores ($(nproc))" test "$(env -u OMP_NUM_THREADS bash -c "$(declare -f prop); TQ_BIN='$TQ_BIN' prop openmp_max_threads")" = "$(nproc)"
hdf5="$(prop hdf5_version)"
check "hdf5_version looks like a version (got $hdf5)" bash -c '[[ "$1" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]' _ "$hdf5"
for header in /usr/include/hdf5/serial/H5public.h /usr/include/H5public.h; do
  if [ -r "$header" ]; then
    hv="$(awk '/#define H5_VERS_MAJOR/{a=$3} /#define H5_VERS_MINOR/{b=$3} /#define H5_VERS_RELEASE/{c=$3} END{print a"."b"."c}' "$header")"
    check "hdf5_version matches the installed headers ($hv)" test "$hdf5" = "$hv"
    break
  fi
done
check "the subcommand list includes info" bash -c '"$1" info --format csv | grep -q "^info,"' _ "$TQ_BIN"

echo "----"
if [ "$failures" -ne 0 ]; then echo "test_info: $failures check(s) FAILED"; exit 1; fi
echo "test_info: all checks passed"
