#!/usr/bin/env bash
# `tq apply`: open-loop reconstruction of a dump. The output is readable by tq's own reader
# (tq inspect), its k/v equal the Python bindings' encode/decode with the CLI's seeds, every other
# dataset is copied, the byte attributes match the bindings' byte accounting, --out is refused
# without --force, the input is never modified (hash before/after), bad input gives one line.
set -uo pipefail
: "${TQ_BIN:?TQ_BIN must name the tq binary}"
: "${TQ_SOURCE_DIR:?TQ_SOURCE_DIR must name the source tree}"
in_dump="$TQ_SOURCE_DIR/data/stories260K.h5"
[ -f "$in_dump" ] || { echo "SKIP: $in_dump missing"; exit 77; }

# Python with h5py + numpy (the repo venv) and the tq module of this build, for the value checks.
py=""
for cand in "${TQ_VENV:-$TQ_SOURCE_DIR/.venv}/bin/python" python3; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import h5py, numpy' >/dev/null 2>&1; then py="$cand"; break; fi
done
modpath="$(cd "$(dirname "$TQ_BIN")" && pwd)/python"

work="$(mktemp -d "${TMPDIR:-/tmp}/tq_cli_apply.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
failures=0
pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1"; failures=$((failures + 1)); }
check() { local what="$1"; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
one_line() { [ "$(wc -l <"$1")" -eq 1 ] && grep -q "^tq: " "$1" && grep -q -- "$2" "$1"; }

cp "$in_dump" in.h5
h0="$(sha256sum in.h5 | cut -d' ' -f1)"

"$TQ_BIN" apply --codec tq-mse:3 --input in.h5 --out r.h5 --seed 5 --format json >rep.json 2>err
check "apply exits 0 and writes the dump" test $? -eq 0 -a -s r.h5
check "input unchanged (sha256)" test "$(sha256sum in.h5 | cut -d' ' -f1)" = "$h0"
"$TQ_BIN" inspect r.h5 --format json >insp.json 2>err
check "tq inspect reads the reconstructed dump" test $? -eq 0 -a -s insp.json

"$TQ_BIN" apply --codec tq-mse:3 --input in.h5 --out r.h5 >/dev/null 2>err
check "existing --out without --force: exit 1" test $? -eq 1
check "existing --out: one line naming the file" one_line err "r.h5"
"$TQ_BIN" apply --codec kivi:2 --input in.h5 --out r.h5 --force >/dev/null 2>err
check "--force overwrites" test $? -eq 0
"$TQ_BIN" apply --codec tq-mse:3 --input in.h5 --out in.h5 --force >/dev/null 2>err
check "--out equal to --input is refused even with --force" one_line err "never modifies its input"
check "input still unchanged" test "$(sha256sum in.h5 | cut -d' ' -f1)" = "$h0"

"$TQ_BIN" apply --codec tq-mse:99 --input in.h5 --out bad.h5 >/dev/null 2>err
check "bad spec: exit 1, one line naming the spec, nothing written" bash -c "one_line() { [ \"\$(wc -l <\"\$1\")\" -eq 1 ] && grep -q -- \"\$2\" \"\$1\"; }; one_line err 'tq-mse:99' && [ ! -e bad.h5 ]"
"$TQ_BIN" apply --codec tq-mse:3 --input missing.h5 --out bad.h5 >/dev/null 2>err
check "missing input: one line naming it" one_line err "missing.h5"
"$TQ_BIN" apply --codec tq-mse:3 --input in.h5 --out bad.h5 --layers 9 >/dev/null 2>err
check "absent layer: one line, nothing written" bash -c "[ \"\$(wc -l <err)\" -eq 1 ] && [ ! -e bad.h5 ]"
printf 'not hdf5' >junk.h5
"$TQ_BIN" apply --codec tq-mse:3 --input junk.h5 --out bad.h5 >/dev/null 2>err
check "not a dump: one line naming it" one_line err "junk.h5"

if [ -z "$py" ] || [ ! -d "$modpath/tq" ]; then
  echo "SKIP (value checks): no python with h5py or no tq module at $modpath"
else
  "$TQ_BIN" apply --codec tq-mse:3 --input in.h5 --out r.h5 --seed 5 --force >/dev/null 2>&1
  "$TQ_BIN" apply --codec kivi:2 --input in.h5 --out rl.h5 --layers 1,3 --dtype f16 >/dev/null 2>&1
  check "k/v equal the bindings' encode/decode; other datasets copied; attributes" \
    env PYTHONPATH="$modpath" "$py" - <<'PY'
import h5py, numpy as np, tq
src, out, outl = h5py.File("in.h5", "r"), h5py.File("r.h5", "r"), h5py.File("rl.h5", "r")
assert out.attrs["tq_apply_loop"] == "open" and "OPEN-LOOP" in out.attrs["tq_apply_provenance"]
pos = src["tokens/positions"][()].astype(np.int32)
total = 0
for l in src["layers"]:
    for name in src[f"layers/{l}"]:
        a = src[f"layers/{l}/{name}"][()]
        if name in ("k", "v"):
            for h in range(a.shape[0]):
                c = tq.Codec("tq-mse:3", a.shape[2], tq.seed_for(5, int(l), h, name), name)
                e = c.encode(np.ascontiguousarray(a[h], np.float32), pos)
                total += len(e)
                assert np.array_equal(out[f"layers/{l}/{name}"][h], c.decode(e)), (l, name, h)
                if int(l) in (1, 3):
                    ck = tq.Codec("kivi:2", a.shape[2], tq.seed_for(0, int(l), h, name), name)
                    want = ck.decode(ck.encode(np.ascontiguousarray(a[h], np.float32), pos)).astype(np.float16)
                    assert np.array_equal(outl[f"layers/{l}/{name}"][h], want), (l, name, h)
            if int(l) not in (1, 3):
                assert np.array_equal(outl[f"layers/{l}/{name}"][()], a.astype(np.float16))
        else:
            assert np.array_equal(out[f"layers/{l}/{name}"][()], a), (l, name)
        for k, v in src[f"layers/{l}"].attrs.items():
            assert np.all(out[f"layers/{l}"].attrs[k] == v), (l, k)
assert int(out.attrs["tq_apply_bytes"]) == total, (out.attrs["tq_apply_bytes"], total)
n_el = sum(src[f"layers/{l}/{t}"].size for l in src["layers"] for t in ("k", "v"))
assert abs(float(out.attrs["tq_apply_bits_per_element"]) - total * 8 / n_el) < 1e-5
assert np.array_equal(out["tokens/ids"][()], src["tokens/ids"][()])
assert out.attrs["model_sha256"] == src.attrs["model_sha256"]
assert outl.attrs["tq_apply_layers"] == "1,3"
PY
fi

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
