#!/usr/bin/env bash
# `tq synth`: writing dumps (--out/--force, dtypes, layers, determinism), --fit, errors.
set -uo pipefail
: "${TQ_BIN:?TQ_BIN must name the tq binary}"
: "${TQ_SOURCE_DIR:?TQ_SOURCE_DIR must name the source tree}"
command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 not found"; exit 77; }

. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tq_cli_setup synth

for fmt in table md csv json; do
  "$TQ_BIN" synth --profile stories-like --tokens 64 --seed 1 --out "s.$fmt.h5" --format "$fmt" >"rep.$fmt" 2>err
  check "synth --format $fmt exits 0 and writes the dump" test $? -eq 0 -a -s "s.$fmt.h5"
  check "synth --format $fmt prints a report" test -s "rep.$fmt"
done
check "json report describes the dump" python3 -c '
import json
j = json.load(open("rep.json"))
p = {r["property"]: r["value"] for r in j["synth"]}
assert p["profile"] == "stories-like" and p["tokens"] == 64 and p["layers_written"] == 5, p
assert j["config"]["profile"] == "stories-like" and j["config"]["seed"] == 1
'
"$TQ_BIN" inspect s.table.h5 --format json >insp.json 2>/dev/null
check "inspect reads the synthetic dump; RoPE passes" python3 -c '
import json
j = json.load(open("insp.json"))
assert all(l["rope_k"] == "pass" and l["rope_q"] == "pass" for l in j["layers"]), j["layers"]
assert j["inputs"][0]["synth_profile"] == "stories-like"
'
# determinism: same seed -> same tensors (SOURCE_DATE_EPOCH also fixes `created`: same bytes)
SOURCE_DATE_EPOCH=0 "$TQ_BIN" synth --profile stories-like --tokens 64 --seed 4 --out a.h5 >/dev/null
SOURCE_DATE_EPOCH=0 "$TQ_BIN" synth --profile stories-like --tokens 64 --seed 4 --out b.h5 --threads 1 >/dev/null
SOURCE_DATE_EPOCH=0 "$TQ_BIN" synth --profile stories-like --tokens 64 --seed 5 --out c.h5 >/dev/null
check "same seed and SOURCE_DATE_EPOCH: byte-identical files" cmp -s a.h5 b.h5
check "another seed: different file" bash -c '! cmp -s a.h5 c.h5'

"$TQ_BIN" synth --profile stories-like --tokens 64 --out a.h5 >/dev/null 2>err
check "existing --out without --force exits 1" test $? -eq 1
check "existing --out: one line naming the file" bash -c '[ "$(wc -l <err)" -eq 1 ] && grep -q "a.h5" err'
check "the refused file is untouched" cmp -s a.h5 b.h5
SOURCE_DATE_EPOCH=0 "$TQ_BIN" synth --profile stories-like --tokens 64 --seed 5 --out a.h5 --force >/dev/null 2>&1
check "--force overwrites" cmp -s a.h5 c.h5

for dt in f16 bf16; do
  "$TQ_BIN" synth --profile llama3-8b-like --tokens 32 --layers 0,31 --dtype "$dt" --out "l.$dt.h5" >/dev/null 2>&1
  check "llama3-8b-like --dtype $dt --layers 0,31 exits 0" test $? -eq 0
done
"$TQ_BIN" inspect l.f16.h5 --format json --no-ks >l.json 2>/dev/null
check "llama3-8b-like: 2 layers of 32/8 heads, d=128, float16" python3 -c '
import json
j = json.load(open("l.json"))
assert [l["layer"] for l in j["layers"]] == [0, 31], j["layers"]
assert all(l["n_heads"] == 32 and l["n_kv_heads"] == 8 and l["head_dim"] == 128 for l in j["layers"])
assert all(h["dtype"] == "float16" for h in j["heads"])
'
"$TQ_BIN" synth --profile gaussian --head-dim 16 --tokens 32 --out g.h5 >/dev/null 2>&1
check "gaussian --head-dim 16" test $? -eq 0 -a -s g.h5

"$TQ_BIN" synth --fit "$TQ_SOURCE_DIR/data/stories260K.h5" --fit-cpp fit.cpp --format json >fit.json 2>/dev/null
check "--fit reproduces the built-in stories-like entropy match" python3 -c '
import json
j = json.load(open("fit.json"))
e = j["entropy"]
assert len(e) == 5 and all(abs(r["real_entropy"] - r["synth_entropy"]) < 1e-3 for r in e), e
assert len(j["fit"]) == 15
'
check "--fit-cpp writes 5 layer initialisers" test "$(grep -c '^  {{' fit.cpp)" -eq 5

# errors: one line, exit 1
expect_error() {  # expect_error "what" pattern args...
  local what="$1" pat="$2"; shift 2
  "$TQ_BIN" synth "$@" >out 2>err
  local rc=$?
  check "$what: exit 1" test "$rc" -eq 1
  check "$what: one line naming it" bash -c '[ "$(wc -l <err)" -eq 1 ] && grep -q -- "$1" err' _ "$pat"
}
expect_error "unknown profile" "--profile" --profile llama9-like --out x.h5
check "unknown profile leaves no file" test ! -e x.h5
expect_error "no profile" "--profile" --out x.h5
expect_error "no --out" "--out" --profile gaussian
expect_error "bad dtype" "--dtype" --profile gaussian --out x.h5 --dtype f8
expect_error "layer outside the profile" "--layers" --profile stories-like --layers 5 --out x.h5
expect_error "bad --fit dump" "nope.h5" --fit nope.h5
check "no stray temporary files" test "$(ls -A | grep -c '\.tmp')" -eq 0

[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all synth checks passed"
