# Shared set-up of the CLI tests (sourced, not run; not a ctest test: the glob is test_*.sh).
#   tq_cli_setup NAME  make a scratch directory (removed on exit) and cd into it
#   pass / fail / check "what" command...   record one check; $failures counts the failed ones
# The caller sets `set -uo pipefail`, checks its own environment (TQ_BIN, ...) and ends with
# `[ "$failures" -eq 0 ] || exit 1`.
failures=0
pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1"; failures=$((failures + 1)); }
check() {  # check "description" command...: passes when the command succeeds
  local what="$1"; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
tq_cli_setup() {
  work="$(mktemp -d "${TMPDIR:-/tmp}/tq_cli_$1.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  cd "$work" || exit 1
}
