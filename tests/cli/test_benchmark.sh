#!/usr/bin/env bash
# `tq benchmark`: accuracy on iid Gaussian data against the exact Lloyd-Max distortion, real
# bytes, determinism (threads, layer subsets), every codec on every bundled dump, default run,
# and bad input (one line, exit 1, no output).
set -uo pipefail
: "${TQ_BIN:?TQ_BIN must name the tq binary}"
: "${TQ_SOURCE_DIR:?TQ_SOURCE_DIR must name the source tree}"
command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 not found"; exit 77; }

. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tq_cli_setup benchmark
data="$TQ_SOURCE_DIR/data"
strip_run() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); j.pop("run"); print(json.dumps(j))' "$1"; }

# ---- accuracy: tq-mse:b on 20000 iid N(0,1) vectors, d = 128 -------------------------------
"$TQ_BIN" benchmark --synthetic gaussian --head-dim 128 --n-vectors 20000 --bits-k 1,2,3,4 --metrics recon \
  --format json --tables summary,rows >g.json 2>err
check "gaussian sweep exits 0" test $? -eq 0
check "gaussian: NMSE within 0.5% of d * exact Lloyd-Max distortion; bits = b + 16/128 exactly" python3 -c '
import json
j = json.load(open("g.json"))
exact = {1: 0.360889, 2: 0.116000, 3: 0.033966, 4: 0.009315}
seen = set()
for r in j["summary"]:
    b = int(r["codec"].split(":")[1])
    rel = r["nmse"] / exact[b] - 1
    print(r["codec"], r["tensor"], r["nmse"], "rel %+.4f" % rel, r["bits_per_element"])
    assert abs(rel) < 0.005, r
    assert r["bits_per_element"] == b + 0.125, r
    assert r["bits_per_element_asymptotic"] == b + 0.125, r
    assert r["ratio_fp16"] == 16 / (b + 0.125), r
    assert r["nmse_ci_lo"] <= r["nmse"] <= r["nmse_ci_hi"], r
    seen.add((b, r["tensor"]))
assert len(seen) == 8, seen
assert len(j["rows"]) == 8 and all(r["n_tokens"] == 20000 for r in j["rows"])
assert any("iid N(0,1)" in n for n in j["notes"])
'
"$TQ_BIN" benchmark --synthetic gaussian --head-dim 64 --n-vectors 600 --codec tq-mse:2 --format json >gq.json 2>/dev/null
check "gaussian without queries: random queries noted, ip reported, attention skipped" python3 -c '
import json
j = json.load(open("gq.json"))
notes = " ".join(j["notes"])
assert "random N(0, I) queries" in notes and "attention metrics skipped" in notes, notes
k = [r for r in j["summary"] if r["tensor"] == "k"][0]
assert k["ip_bias"] is not None and k["ip_rms"] > 0, k
assert j["attention"] == [] and j["attn_summary"] == []
'

# ---- determinism: threads, layer subsets --------------------------------------------------
args=(--input "$data/stories260K.h5" "$data/smollm2_a.h5" --tokens 0-99 --codec "tq-mse:3;hr,tq-mse:2"
      --seeds 2 --format json)
"$TQ_BIN" benchmark "${args[@]}" --layers 0-3 --threads 1 >t1.json 2>err
check "threads 1 exits 0" test $? -eq 0
"$TQ_BIN" benchmark "${args[@]}" --layers 0-3 --threads 2 >t2.json 2>err
check "threads 2 exits 0" test $? -eq 0
check "--threads 1 and 2: byte-identical JSON outside run" cmp -s <(strip_run t1.json) <(strip_run t2.json)
"$TQ_BIN" benchmark "${args[@]}" --layers 1,3 >sub.json 2>err
check "--layers subset exits 0" test $? -eq 0
check "--layers 1,3 reproduces the full run's rows byte for byte" python3 -c '
import json
full, sub = json.load(open("t1.json")), json.load(open("sub.json"))
for table in ("rows", "attention"):
    want = [r for r in full[table] if r["layer"] in (1, 3)]
    assert want and json.dumps(sub[table]) == json.dumps(want), table
assert {r["seed"] for r in full["rows"]} == {0, 1}
assert all(r["nmse_sd"] is not None for r in full["summary"])
'

# ---- every registered codec on every bundled dump -----------------------------------------
codecs="$("$TQ_BIN" benchmark --help | awk '/^Codecs:/{on=1; next} /^Stages:/{on=0} on && NF {print $1}')"
check "codec list parsed from --help" test "$(echo "$codecs" | wc -l)" -ge 10
for dump in "$data"/*.h5; do
  d="$(basename "$dump")"
  specs=""
  for c in $codecs; do
    # outlier keeps 32 channels by default: on the head_dim-8 stories dump split 2 of 8 channels
    if [ "$c" = outlier ] && [ "$d" = stories260K.h5 ]; then c="outlier,n=2"; fi
    specs="${specs:+$specs;}$c"
  done
  "$TQ_BIN" benchmark --input "$dump" --layers 0,1 --tokens 0-63 --codec "$specs" --bits-k 3 --bootstrap 100 \
    --format json >"all_$d.json" 2>err
  check "every codec on $d exits 0" test $? -eq 0
  check "every codec on $d: finite NMSE, real bytes, attention rows" python3 -c '
import json, math, sys
j = json.load(open(sys.argv[1]))
n_codecs = int(sys.argv[2])
assert len(j["sweep"]["codecs_k"]) == n_codecs, j["sweep"]
for r in j["summary"]:
    assert math.isfinite(r["nmse"]) and r["bits_per_element"] > 0, r
    assert abs(r["bits_per_element"] - (r["bits_payload"] + r["bits_side"] + r["bits_window"])) < 1e-9, r
assert len(j["attn_summary"]) == n_codecs
fp32 = [r for r in j["summary"] if r["codec"] == "fp32"]
assert all(r["nmse"] == 0 and r["bits_per_element"] == 32 for r in fp32), fp32
' "all_$d.json" "$(echo "$codecs" | wc -l)"
done

# ---- sinks, config file, default run --------------------------------------------------------
"$TQ_BIN" benchmark --input "$data/smollm2_b.h5" --layers 0 --bits-k 2 --keep-sinks 4 --format json >s.json 2>err
check "--keep-sinks 4: sinks counted as window bytes" python3 -c '
import json
j = json.load(open("s.json"))
r = j["summary"][0]
assert r["codec"] == "tq-mse:2,sinks=4", r
T, d = r["n_tokens"], 64
assert abs(r["bits_window"] - 4 * d * 16 / (T * d)) < 1e-12, r
'
(cd "$TQ_SOURCE_DIR" && "$TQ_BIN" benchmark --config configs/benchmark.toml --layers 0 --format json) >cfg.json 2>err
check "configs/benchmark.toml runs" test $? -eq 0
check "config: 8 codecs per tensor, 3 seeds, heads 0-1" python3 -c '
import json
j = json.load(open("cfg.json"))
assert len(j["sweep"]["codecs_k"]) == 8 and j["config"]["seeds"] == 3, j["sweep"]
assert {r["head"] for r in j["rows"]} == {0, 1}
'
"$TQ_BIN" benchmark --bits-k 4 >default.txt 2>err
check "default run (bundled dumps) exits 0" test $? -eq 0
check "default run prints the overview for the 3 bundled dumps" bash -c \
  'grep -q "^overview" default.txt && grep -q "^smollm2_a " default.txt && grep -q "^stories260K " default.txt'

# ---- bad input: one line naming it, exit 1, nothing on stdout, no --out file ------------------
expect_error() {  # expect_error "what" pattern args...
  local what="$1" pat="$2"; shift 2
  "$TQ_BIN" benchmark "$@" >out 2>err
  local rc=$?
  check "$what: exit 1" test "$rc" -eq 1
  check "$what: one line naming it" bash -c '[ "$(wc -l <err)" -eq 1 ] && grep -q -- "$1" err' _ "$pat"
  check "$what: no output" test ! -s out
}
expect_error "missing file" "nope.h5" --input nope.h5
expect_error "glob matching nothing" "nomatch" --input "nomatch*.h5"
expect_error "bad codec spec" "tq-msee" --input "$data/stories260K.h5" --codec tq-msee:4
expect_error "unsupported bits" "tq-mse:9" --input "$data/stories260K.h5" --codec tq-mse:9
expect_error "empty selection" "layer 40" --input "$data/stories260K.h5" --layers 40
head -c 100000 "$data/stories260K.h5" >corrupt.h5
expect_error "corrupt file" "corrupt.h5" --input corrupt.h5
touch exists.json
expect_error "--out exists without --force" "exists.json" --input "$data/stories260K.h5" --out exists.json
check "--out refused: file untouched" test ! -s exists.json
"$TQ_BIN" benchmark --input "$data/stories260K.h5" --layers 0 --out exists.json --force --format json 2>err
check "--out --force writes the report" python3 -c 'import json; assert json.load(open("exists.json"))["command"] == "benchmark"'

if [ "$failures" -ne 0 ]; then echo "$failures check(s) failed"; exit 1; fi
echo "all benchmark CLI checks passed"
