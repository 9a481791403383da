#!/usr/bin/env bash
# `tq inspect` on the bundled dump: formats, selections, the RoPE check, KS values, errors.
set -uo pipefail
: "${TQ_BIN:?TQ_BIN must name the tq binary}"
: "${TQ_SOURCE_DIR:?TQ_SOURCE_DIR must name the source tree}"
command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 not found"; exit 77; }
dump="$TQ_SOURCE_DIR/data/stories260K.h5"
[ -r "$dump" ] || { echo "SKIP: $dump missing"; exit 77; }

. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tq_cli_setup inspect

for fmt in table md csv json; do
  "$TQ_BIN" inspect "$dump" --format "$fmt" >"out.$fmt" 2>"err.$fmt"
  check "inspect --format $fmt exits 0" test $? -eq 0
  check "inspect --format $fmt writes no stderr" test ! -s "err.$fmt"
done
check "table output has both tables" bash -c 'grep -q "^heads$" out.table && grep -q "^layers$" out.table'
check "md output is pipe tables" grep -qF '| layer | head | tensor | shape |' out.md
check "json: rows, layers, channels, inputs, RoPE pass, KS values" python3 - <<'PY'
import json, math
j = json.load(open("out.json"))
heads, layers = j["heads"], j["layers"]
# default tensors k, v, q: 5 layers x (4 + 4 + 8) heads
assert len(heads) == 5 * 16, len(heads)
assert len(layers) == 5
assert all(l["rope_k"] == "pass" and l["rope_q"] == "pass" for l in layers), layers
assert all(l["rope_k_rel_err"] <= 1e-4 for l in layers)
assert all(0 < l["attn_entropy"] < l["attn_entropy_uniform"] for l in layers)
assert j["inputs"][0]["path"].endswith("stories260K.h5")
assert j["inputs"][0]["format"] == "tq-kv-dump"
v = [h for h in heads if h["tensor"] == "v"]
ks = sum(h["ks_haar"] for h in v) / len(v)
print(f"mean V ks_haar = {ks:.4f} (1/sqrt(T*d) = {1/math.sqrt(426*8):.4f})")
assert ks < 0.08, ks
assert all(h["shape"] == "426x8" and h["dtype"] == "float32" for h in heads)
assert all(h["attn_entropy"] is None for h in heads if h["tensor"] != "q")
assert len(j["channels"]) == len(heads) and len(j["channels"][0]["mean"]) == 8
PY
"$TQ_BIN" inspect "$dump" --layers 2-3 --heads 1 --tensors k_pre,v --format csv >sel.csv
check "selection: --layers 2-3 --heads 1 --tensors k_pre,v gives 4 rows" python3 -c '
import csv
rows = list(csv.reader(open("sel.csv")))
sep = rows.index([])
heads = rows[1:sep]
assert len(heads) == 4, heads
assert {(r[0], r[1], r[2]) for r in heads} == {("2","1","k_pre"),("2","1","v"),("3","1","k_pre"),("3","1","v")}, heads
'
"$TQ_BIN" inspect "$dump" --seed 3 --format json | python3 -c 'import json,sys; j=json.load(sys.stdin); j.pop("run"); print(json.dumps(j))' >s3a
"$TQ_BIN" inspect "$dump" --seed 3 --threads 1 --format json | python3 -c 'import json,sys; j=json.load(sys.stdin); j.pop("run"); print(json.dumps(j))' >s3b
check "same seed, different thread count: identical JSON" cmp -s s3a s3b
"$TQ_BIN" inspect "$dump" --out rep.txt >/dev/null 2>&1
check "--out writes the report" test -s rep.txt
"$TQ_BIN" inspect "$dump" --out rep.txt >/dev/null 2>err
check "--out refuses to overwrite without --force (exit 1)" test $? -eq 1
"$TQ_BIN" inspect "$dump" --out rep.txt --force >/dev/null 2>&1
check "--force overwrites" test $? -eq 0

# errors: one line on stderr, exit 1
expect_error() {  # expect_error "what" pattern args...
  local what="$1" pat="$2"; shift 2
  "$TQ_BIN" inspect "$@" >out 2>err
  local rc=$?
  check "$what: exit 1" test "$rc" -eq 1
  check "$what: one line naming it" bash -c '[ "$(wc -l <err)" -eq 1 ] && grep -q "$1" err' _ "$pat"
  check "$what: nothing on stdout" test ! -s out
}
expect_error "missing file" "nope.h5" nope.h5
printf 'not hdf5' >junk.h5
expect_error "not an HDF5 file" "junk.h5" junk.h5
expect_error "layer not in the dump" "layers" "$dump" --layers 7
expect_error "bad layer list" "layers" "$dump" --layers 1-x
expect_error "unknown tensor" "tensors" "$dump" --tensors k,zz
"$TQ_BIN" inspect >/dev/null 2>&1
rc=$?
check "no input: usage error (CLI11 code)" test "$rc" -ge 100

[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all inspect checks passed"
