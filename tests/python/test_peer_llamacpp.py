"""scripts/peer_llamacpp_kv.py on the real SmolLM2 GGUF: llama.cpp's quantized KV caches.

Skipped unless llama-cpp-python is installed (it builds llama.cpp from source, which is slow) and
the SmolLM2 GGUF is cached (scripts/fetch_smollm2.sh, or TQ_SMOLLM2_GGUF). Checks: the f16 cache
against itself gives KL 0 (llama.cpp is deterministic on one thread count), and q8_0 damages the
predictions less than q4_0 (paired, beyond the standard error).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytest.importorskip("llama_cpp")
GGUF = os.environ.get("TQ_SMOLLM2_GGUF") or str(REPO / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")
if not os.path.isfile(GGUF):
    pytest.skip(f"SmolLM2 GGUF not cached ({GGUF}; scripts/fetch_smollm2.sh)", allow_module_level=True)


def test_llamacpp_caches(tmp_path):
    out = tmp_path / "peer.json"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "peer_llamacpp_kv.py"), "--model", GGUF,
                        "--tokens-from", str(REPO / "data" / "smollm2_a.h5"), "--cache", "f16",
                        "--cache", "q8_0", "--cache", "q4_0", "--format", "json", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = {x["spec"]: x for x in json.loads(out.read_text())["rows"]}
    assert rows["llama.cpp f16"]["kl"] == pytest.approx(0.0, abs=1e-12)
    q8, q4 = rows["llama.cpp q8_0"], rows["llama.cpp q4_0"]
    assert 0 < q8["kl"] < q4["kl"] - q4["kl_se"]
    # the reference is llama.cpp's own; its PPL is close to the numpy backend's (data/README.md: 2.9250)
    assert q8["nll_ref"] == pytest.approx(2.925, abs=0.05)
