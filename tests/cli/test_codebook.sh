#!/usr/bin/env bash
# `tq codebook solve|show|verify|list`: files, JSON values, determinism, bad files, errors.
set -uo pipefail
: "${TQ_BIN:?TQ_BIN must name the tq binary}"
: "${TQ_SOURCE_DIR:?TQ_SOURCE_DIR must name the source tree}"
command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 not found"; exit 77; }

. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tq_cli_setup codebook
A="$TQ_SOURCE_DIR/data/smollm2_a.h5"
B="$TQ_SOURCE_DIR/data/smollm2_b.h5"

# 1. law solve: published value, JSON with train/held-out, iterations, time
mkdir -p cb
"$TQ_BIN" codebook solve --source beta:128 --bits 2 --out cb/b128_2.toml --format json --law-samples 65536 >solve.json 2>err
check "solve beta:128 writes the file" test -s cb/b128_2.toml
check "json: train 0.116000, held-out close, iterations and time" python3 -c '
import json
j = json.load(open("solve.json"))
s = {r["field"]: r["value"] for r in j["solve"]}
assert abs(s["train"] - 0.116000) < 5e-7, s
assert abs(s["heldout_value"] / s["train"] - 1) < 0.03, s
assert s["iterations"] >= 1 and s["bits"] == 2 and s["scope"] == "analytic", s
assert "solve_seconds" in j["run"] and j["run"]["solve_seconds"] < 1.0, j["run"]
assert j["command"] == "codebook solve"
assert len(j["centroids"]) == 4
'
# 2. refuses to overwrite without --force; --force works
"$TQ_BIN" codebook solve --source beta:128 --bits 2 --out cb/b128_2.toml >/dev/null 2>err
check "existing --out without --force: exit 1, one line naming the file" bash -c \
  "test \$(wc -l <err) -eq 1 && grep -q 'cb/b128_2.toml' err"
"$TQ_BIN" codebook solve --source beta:128 --bits 2 --out cb/b128_2.toml --force >/dev/null 2>err
check "--force overwrites" test $? -eq 0

# 3. determinism: the file is byte-identical at any thread count
"$TQ_BIN" codebook solve --source "dump:$A" --heldout "dump:$B" --layers 2 --heads 0 --bits 3 --out t1.toml --threads 1 >/dev/null
"$TQ_BIN" codebook solve --source "dump:$A" --heldout "dump:$B" --layers 2 --heads 0 --bits 3 --out t2.toml --threads 2 >/dev/null
check "dump solve: byte-identical files at 1 and 2 threads" cmp -s t1.toml t2.toml
check "one layer and head -> scope tensor" grep -q 'scope = "tensor"' t1.toml

# 3b. tq benchmark --codebook DIR: the per-tensor file serves layer 2 / KV head 0 / K only and
# carries its 8 fp32 centroids as side bytes; every other tensor falls back to default_b3.toml
mkdir -p cbd && cp t1.toml cbd/L2_H0_k_b3.toml
"$TQ_BIN" codebook solve --source beta:64 --bits 3 --out cbd/default_b3.toml >/dev/null 2>&1
"$TQ_BIN" benchmark -i "$A" --layers 2 --bits-k 3 --codebook cbd --metrics recon --format json >bcb.json 2>err
check "benchmark --codebook DIR exits 0" test $? -eq 0
"$TQ_BIN" benchmark -i "$A" --layers 2 --bits-k 3 --metrics recon --format json >bref.json 2>/dev/null
check "benchmark --codebook DIR: per-tensor side bytes only on L2 H0 k" python3 -c '
import json
rows = {(r["head"], r["tensor"]): r for r in json.load(open("bcb.json"))["rows"]}
ref = {(r["head"], r["tensor"]): r for r in json.load(open("bref.json"))["rows"]}
T, d = rows[(0, "k")]["n_tokens"], 64
extra = 4 * 8 * 8 / (T * d)          # 2^3 fp32 centroids, in bits per element
for key, r in rows.items():
    want = ref[key]["bits_side"] + (extra if key == (0, "k") else 0.0)
    assert abs(r["bits_side"] - want) < 1e-12, (key, r["bits_side"], want)
    if key != (0, "k"):              # default_b3.toml holds the analytic codebook: same result
        assert abs(r["nmse"] - ref[key]["nmse"]) < 1e-4 * ref[key]["nmse"], (key, r["nmse"], ref[key]["nmse"])
assert rows[(0, "k")]["nmse"] != ref[(0, "k")]["nmse"]
'

# 4. cma-es and fuzzy report generations/evaluations and a trajectory; cma-es never worse
"$TQ_BIN" codebook solve --solver cma-es --objective attention --source "dump:$A" --heldout "dump:$B" --layers 3 \
  --bits 2 --generations 5 --format json --out cma.toml >cma.json 2>/dev/null
check "cma-es attention: evaluations, trajectory, never worse than its start" python3 -c '
import json
j = json.load(open("cma.json"))
s = {r["field"]: r["value"] for r in j["solve"]}
assert s["evaluations"] > 5 and s["iterations"] == 5, s
assert s["train"] <= s["start_train"], s
t = j["trajectory"]; assert len(t) == 6 and all(b <= a for a, b in zip(t, t[1:])), t
assert s["heldout"].endswith("smollm2_b.h5")
'
"$TQ_BIN" codebook solve --solver fuzzy --source beta:64 --bits 3 --format json --law-samples 65536 >fz.json 2>/dev/null
check "fuzzy on a law: close to the Lloyd-Max optimum" python3 -c '
import json
j = json.load(open("fz.json"))
v = {r["codebook"]: r for r in j["values"]}
assert v["fuzzy"]["train"] < v["analytic"]["train"] * 1.001, v
'

# 5. show, verify, list
"$TQ_BIN" codebook show cb/b128_2.toml --format json >show.json
check "show prints the fields" python3 -c '
import json
j = json.load(open("show.json"))
f = {r["field"]: r["value"] for r in j["codebook"]}
assert f["bits"] == 2 and f["dim"] == 128 and f["solver"] == "lloyd-max"
'
"$TQ_BIN" codebook verify t1.toml --format json >ver.json
check "verify recomputes a dump codebook's values exactly" python3 -c '
import json
j = json.load(open("ver.json"))
for r in j["verify"]: assert r["rel_diff"] < 1e-12, r
'
"$TQ_BIN" codebook verify cb/b128_2.toml --format json >verl.json
check "verify on fresh law samples agrees within sampling noise" python3 -c '
import json
j = json.load(open("verl.json"))
for r in j["verify"]: assert r["rel_diff"] < 0.02, r
'
cp t1.toml cb/L2_H0_k.toml
"$TQ_BIN" codebook list cb --format csv >list.csv
check "list shows every file" bash -c "test \$(wc -l <list.csv) -eq 3 && grep -q L2_H0_k.toml list.csv"

# 5b. compare: per layer/head/K-V rows on stories260K (token split)
"$TQ_BIN" codebook compare --source "dump:$TQ_SOURCE_DIR/data/stories260K.h5" --bits 2 --layers 0,1 --format json >cmp.json 2>/dev/null
check "compare: one row per layer/head/tensor with KS and held-out values" python3 -c '
import json
rows = json.load(open("cmp.json"))["compare"]
assert len(rows) == 2 * 4 * 2, len(rows)
for r in rows:
    assert 0 < r["ks"] < 1 and 0 < r["ks_null"] < 0.1 and r["nmse_analytic"] > 0 and r["nmse_data"] > 0, r
    assert (r["kl_analytic"] is not None) == (r["tensor"] == "k"), r
'

# 6. bad files: one line naming the file and the field, exit 1
sed 's/^version = 1/version = 7/' cb/b128_2.toml >bad_version.toml
sed '/^dim = /d' cb/b128_2.toml >bad_missing.toml
sed 's/^bits = 2/bits = 3/' cb/b128_2.toml >bad_count.toml
python3 - <<'EOF'
t = open("cb/b128_2.toml").read()
i = t.index("centroids = [")
j = t.index("]", i)
vals = t[i + 13:j].replace("\n", " ").split(",")
vals = [v.strip() for v in vals if v.strip()]
open("bad_unsorted.toml", "w").write(t[:i] + "centroids = [" + ", ".join(reversed(vals)) + "]" + t[j + 1:])
open("bad_nan.toml", "w").write(t[:i] + "centroids = [nan, " + ", ".join(vals[1:]) + "]" + t[j + 1:])
EOF
for case in version:version missing:dim count:centroids unsorted:centroids nan:centroids; do
  name="${case%%:*}"; field="${case##*:}"
  "$TQ_BIN" codebook show "bad_$name.toml" >out 2>err
  rc=$?
  check "bad file ($name): exit 1, one line naming file and field '$field', no stdout" bash -c \
    "test $rc -eq 1 && test \$(wc -l <err) -eq 1 && grep -q 'bad_$name.toml' err && grep -q \"'$field'\" err && test ! -s out"
done
mkdir -p badlist && cp bad_nan.toml badlist/
"$TQ_BIN" codebook list badlist >out 2>err
rc=$?
check "list with a bad file fails with one line naming it" bash -c "test $rc -eq 1 && test \$(wc -l <err) -eq 1 && grep -q bad_nan.toml err"

# 7. flag errors
"$TQ_BIN" codebook solve --source laplace --bits 2 >out 2>err
check "unknown source: one line naming --source" bash -c "test \$(wc -l <err) -eq 1 && grep -q -- '--source' err"
"$TQ_BIN" codebook solve --source beta:64 --objective attention --bits 2 >out 2>err
check "attention on a law: refused" bash -c "test \$(wc -l <err) -eq 1 && grep -q 'dump' err"
"$TQ_BIN" codebook solve --source "dump:$A" --heads 5 --bits 2 >out 2>err
check "--heads out of range: one line" bash -c "test \$(wc -l <err) -eq 1 && grep -q -- '--heads' err"
"$TQ_BIN" codebook solve --source beta:64 --bits 9 >out 2>err
check "--bits 9 refused" bash -c "test \$(wc -l <err) -eq 1 && grep -q -- '--bits' err"
"$TQ_BIN" codebook >out 2>err
check "bare 'tq codebook' is a usage error" test $? -ne 0

[ "$failures" -eq 0 ] || { echo "$failures check(s) failed"; exit 1; }
echo "all codebook CLI checks passed"
