#!/usr/bin/env bash
# Output and CLI conventions every tq subcommand shares, exercised through `tq info`:
# formats, deterministic JSON, --out/--force, --config, usage errors and exit codes, NO_COLOR.
# Needs TQ_BIN (the built binary) and python3; exit 77 (skip) without python3.
set -uo pipefail
: "${TQ_BIN:?TQ_BIN must name the tq binary}"
command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 not found"; exit 77; }

. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tq_cli_setup conventions
json_ok() { python3 -c 'import json,sys; json.load(sys.stdin)' <"$1" 2>/dev/null; }
lines() { wc -l <"$1" | tr -d ' '; }

# ---- formats ------------------------------------------------------------------------------------
for fmt in table md csv json; do
  "$TQ_BIN" info --format "$fmt" >"out.$fmt" 2>"err.$fmt"
  rc=$?
  check "info --format $fmt exits 0" test "$rc" -eq 0
  check "info --format $fmt writes a report to stdout" test -s "out.$fmt"
  check "info --format $fmt writes nothing to stderr (not a terminal)" test ! -s "err.$fmt"
done
check "json output parses" json_ok out.json
check "table output has the property/value header" grep -q '^property  *value$' out.table
check "md output is a pipe table" grep -qF '| property | value |' out.md
check "csv output parses with the csv module, header first" python3 -c '
import csv, sys
rows = list(csv.reader(open("out.csv", newline="")))
assert rows[0] == ["property", "value"], rows[0]
assert ["info", "Show version, build, SIMD level, OpenMP and HDF5 facts"] in rows
'
check "json layout: fixed top-level key order with run last" python3 -c '
import json
j = json.load(open("out.json"))
keys = list(j)
assert keys[:6] == ["schema_version", "tool", "version", "command", "config", "inputs"], keys
assert keys[-1] == "run", keys
assert j["schema_version"] == 1 and j["tool"] == "tq" and j["command"] == "info"
assert list(j["run"]) == ["started", "finished", "wall_s", "host", "threads", "git_commit", "argv"], list(j["run"])
assert j["run"]["argv"][1:] == ["info", "--format", "json"], j["run"]["argv"]
assert all(list(row) == ["property", "value"] for row in j["info"])
'

# ---- determinism: everything outside "run" is identical between two runs --------------------
"$TQ_BIN" info --format json >run1.json 2>/dev/null
"$TQ_BIN" info --format json >run2.json 2>/dev/null
check "two runs give identical JSON outside run" python3 -c '
import json
a, b = (json.load(open(f)) for f in ("run1.json", "run2.json"))
a.pop("run"); b.pop("run")
assert json.dumps(a) == json.dumps(b)
'
check "two runs give byte-identical text tables" cmp -s <("$TQ_BIN" info) <("$TQ_BIN" info)

# ---- --out / --force ----------------------------------------------------------------------------
"$TQ_BIN" info --format json --out report.json >stdout.txt 2>stderr.txt
rc=$?
check "--out exits 0" test "$rc" -eq 0
check "--out writes a JSON file" json_ok report.json
check "--out leaves stdout empty" test ! -s stdout.txt
cp report.json report.orig
"$TQ_BIN" info --format csv --out report.json >stdout.txt 2>stderr.txt
rc=$?
check "existing --out without --force exits 1" test "$rc" -eq 1
check "the refusal is one line on stderr" test "$(lines stderr.txt)" -eq 1
check "the refusal names the file" grep -q "^tq: .*'report.json'.*--force" stderr.txt
check "the refused file is unchanged" cmp -s report.json report.orig
check "nothing was written to stdout on refusal" test ! -s stdout.txt
check "no temporary files are left behind" test "$(ls -A | grep -c tq-tmp)" -eq 0
"$TQ_BIN" info --format csv --out report.json --force >/dev/null 2>&1
rc=$?
check "--force overwrites (exit 0)" test "$rc" -eq 0
check "--force replaced the content" grep -q '^property,value' report.json
"$TQ_BIN" info --out missing_dir/r.json >/dev/null 2>stderr.txt
rc=$?
check "--out into a missing directory exits 1 with one line" test "$rc" -eq 1 -a "$(lines stderr.txt)" -eq 1
check "--out into a missing directory creates nothing" test ! -e missing_dir

# ---- --config -----------------------------------------------------------------------------------
cat >c.toml <<'TOML'
# a config file for tq info: keys are long flag names
format = "json"
threads = 1
TOML
"$TQ_BIN" info --config c.toml >cfg.out 2>/dev/null
rc=$?
check "--config exits 0" test "$rc" -eq 0
check "--config sets the format (JSON)" json_ok cfg.out
check "--config sets threads" python3 -c '
import json; j = json.load(open("cfg.out")); assert j["run"]["threads"] == 1, j["run"]'
"$TQ_BIN" info --config c.toml --format csv >cfg2.out 2>/dev/null
check "a flag overrides the config file (--format csv)" grep -q '^property,value' cfg2.out
"$TQ_BIN" info --threads 2 --config c.toml >cfg3.out 2>/dev/null
check "a flag overrides the config file (--threads 2)" python3 -c '
import json; j = json.load(open("cfg3.out")); assert j["run"]["threads"] == 2, j["run"]'
printf 'format = "json"\nno_such_key = 3\n' >bad.toml
"$TQ_BIN" info --config bad.toml >/dev/null 2>stderr.txt
rc=$?
check "an unknown config key exits 1" test "$rc" -eq 1
check "the error names the key and the file in one line" \
  test "$(lines stderr.txt)" -eq 1 -a "$(grep -c "bad.toml:2: unknown key 'no_such_key'" stderr.txt)" -eq 1
printf 'threads = "many"\n' >badval.toml
"$TQ_BIN" info --config badval.toml >/dev/null 2>stderr.txt
rc=$?
check "a bad config value exits 1 naming key and file" \
  test "$rc" -eq 1 -a "$(grep -c "badval.toml:1: key 'threads'" stderr.txt)" -eq 1
printf 'format = \n' >syntax.toml
"$TQ_BIN" info --config syntax.toml >/dev/null 2>stderr.txt
rc=$?
check "a TOML syntax error exits 1 with file:line:column" \
  test "$rc" -eq 1 -a "$(grep -c '^tq: syntax.toml:1:' stderr.txt)" -eq 1
"$TQ_BIN" info --config no_such.toml >/dev/null 2>stderr.txt
rc=$?
check "a missing config file exits 1 naming it" test "$rc" -eq 1 -a "$(grep -c "no_such.toml" stderr.txt)" -eq 1

# ---- usage errors: CLI11 exit codes (100-127) ---------------------------------------------------
usage_code() { "$TQ_BIN" "$@" >/dev/null 2>&1; local rc=$?; test "$rc" -ge 100 -a "$rc" -le 127; }
check "a bad --format is a usage error (exit >= 100)" usage_code info --format xml
check "an unknown subcommand is a usage error" usage_code nonexistent
check "no subcommand is a usage error" usage_code
check "an unknown flag is a usage error" usage_code info --no-such-flag
check "a negative --threads is a usage error" usage_code info --threads -1
check "--help exits 0 and lists info with its description" \
  bash -c '"$1" --help | grep -q "info  *Show version, build, SIMD level"' _ "$TQ_BIN"
check "info --help lists the common options" \
  bash -c 'h="$("$1" info --help)"; for o in --format --out --force --config --threads --quiet; do grep -q -- "$o" <<<"$h" || exit 1; done' _ "$TQ_BIN"
check "--version prints the version" bash -c '"$1" --version | grep -Eq "^tq [0-9]+\.[0-9]+\.[0-9]+"' _ "$TQ_BIN"

# ---- colour: only on a terminal and never with NO_COLOR -------------------------------------------
cat >pty_stderr.py <<'PY'
# Run a command with stderr on a pseudo-terminal; print whether ANSI escapes appeared.
import os, pty, subprocess, sys
master, slave = pty.openpty()
proc = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
os.close(slave)
data = b""
while True:
    try:
        chunk = os.read(master, 4096)
    except OSError:
        break
    if not chunk:
        break
    data += chunk
print("ansi" if b"\x1b[" in data else "plain", proc.returncode)
PY
check "an error on a terminal is coloured" \
  test "$(env -u NO_COLOR python3 pty_stderr.py "$TQ_BIN" info --out missing_dir/x)" = "ansi 1"
check "NO_COLOR=1 turns colour off on a terminal" \
  test "$(NO_COLOR=1 python3 pty_stderr.py "$TQ_BIN" info --out missing_dir/x)" = "plain 1"
env -u NO_COLOR "$TQ_BIN" info --out missing_dir/x 2>stderr.txt
check "no colour when stderr is not a terminal" \
  python3 -c 'import sys; d = open("stderr.txt", "rb").read(); assert d.startswith(b"tq: ") and b"\x1b" not in d, d'

echo "----"
if [ "$failures" -ne 0 ]; then
  echo "test_conventions: $failures check(s) FAILED"
  exit 1
fi
echo "test_conventions: all checks passed"
