#!/usr/bin/env python3
"""Validate the numpy GGUF backend (scripts/dumpkv_gguf) against independent implementations.

* tokenization: dumpkv_gguf's BPE vs llama.cpp's tokenizer (llama-cpp-python) and vs HuggingFace
  `tokenizers` (a BPE model built from the same GGUF vocabulary and merges), on a fixed English
  text and on a mixed stress text (digits, punctuation, whitespace runs, non-ASCII);
* forward pass: logits of every position vs llama.cpp (llama-cpp-python, logits_all=True) on the
  fixed English text: max / mean |delta logit|, next-token top-1 agreement, NLL of both;
* greedy continuation of a fixed prompt by both.

Prints one JSON object.  --write-reference FILE stores this run's numpy-side values (NLL of the
text, greedy continuation of the prompt) for tests/python/test_gguf_smollm2.py.

Usage: scripts/validate_gguf.py [--gguf PATH] [--write-reference tests/python/gguf_reference.json]
(PATH defaults to the output of scripts/fetch_smollm2.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from dumpkv_gguf import load, next_token_nll  # noqa: E402

# A fixed English paragraph (written for this check; 109 tokens with SmolLM2's tokenizer).
TEXT = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk. From the top he could "
    "see the fishing boats returning to the harbour, their lamps flickering against the dark water. "
    "He wrote the weather in a small notebook: wind from the west, light rain, visibility good. "
    "In the morning he would walk down to the village to buy bread and read the newspaper. "
    "The baker always asked about the storms, and the children wanted to hear about the ships "
    "that had passed in the night. Once a year an inspector came to check the great lens."
)
# Tokenizer stress text: digits (split one by one for SmolLM), contractions, whitespace runs,
# tabs/newlines, punctuation clusters, accented letters, CJK, emoji, special-token look-alikes.
STRESS_TEXT = (
    "In 2024, 1,234.56 units cost $7.89 (≈ €7,30) — a 12% rise!  It's what we'd've done; "
    "they'll say I'm wrong.\n\n\tdef f(x):\n        return x**2 + 3e-5  # comment\n"
    "naïve café Zürich São Paulo Ελληνικά русский 日本語 한국어 😀👍🏽 <|im_start|>user\n"
    "   trailing spaces   \n\n\n½ ² Ⅻ ٣ ...!!! ??? ---- ==== https://example.com/a?b=c&d=e"
)
PROMPT = "The three primary colours are"
N_GREEDY = 16
GGML_TYPE_F32 = 0  # ggml_type enum value of F32 (llama_cpp.GGML_TYPE_F32)


def default_gguf() -> str:
    out = subprocess.run([os.path.join(HERE, "fetch_smollm2.sh")], check=True,
                         stdout=subprocess.PIPE, text=True)
    return out.stdout.strip().splitlines()[-1]


def hf_tokenizer(tok_meta):
    """HuggingFace `tokenizers` BPE with SmolLM's pre-tokenizer, from the GGUF's vocab/merges."""
    from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: PLC0415

    if tok_meta.get("pre") not in ("smollm", "starcoder"):
        raise RuntimeError(f"HF comparison only configured for pre=smollm (file has {tok_meta.get('pre')})")
    vocab = {t: i for i, t in enumerate(tok_meta["tokens"])}
    merges = [tuple(m.split(" ", 1)) for m in tok_meta["merges"]]
    hf = Tokenizer(models.BPE(vocab, merges))
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    return hf


def agreement(a: list[int], b: list[int]) -> dict:
    n = min(len(a), len(b))
    same = sum(int(x == y) for x, y in zip(a, b))
    return {"equal": a == b, "len_a": len(a), "len_b": len(b),
            "position_agreement": same / max(len(a), len(b), 1), "first_difference":
            next((i for i in range(n) if a[i] != b[i]), None if len(a) == len(b) else n)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", help="GGUF file (default: scripts/fetch_smollm2.sh)")
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    ap.add_argument("--f32-copy", metavar="PATH", help="all-F32 copy of the GGUF for the exact comparison "
                    "(default: next to the GGUF, <name>.f32.gguf; written if missing)")
    ap.add_argument("--no-f32", action="store_true", help="skip the all-F32 llama.cpp comparison")
    ap.add_argument("--write-reference", metavar="FILE", help="write the numpy-side reference JSON")
    args = ap.parse_args()
    path = args.gguf or default_gguf()
    report: dict = {"gguf": os.path.basename(path), "versions": {"numpy": np.__version__}}

    t0 = time.perf_counter()
    gm, model, tok = load(path)
    report["load_s"] = round(time.perf_counter() - t0, 2)
    report["config"] = gm.config
    report["tensor_types"] = {t: sum(1 for v in gm.tensor_types.values() if v == t)
                              for t in sorted(set(gm.tensor_types.values()))}
    import gguf  # noqa: PLC0415
    report["versions"]["gguf"] = getattr(gguf, "__version__", None) or _dist_version("gguf")

    ids = tok.encode(TEXT)
    stress_ids = tok.encode(STRESS_TEXT)
    prompt_ids = tok.encode(PROMPT)
    report["n_tokens"] = len(ids)

    t0 = time.perf_counter()
    fwd = model.forward(ids, capture=None)
    report["numpy_forward_s"] = round(time.perf_counter() - t0, 3)
    ours = fwd.logits.astype(np.float64)
    nll_ours, _ = next_token_nll(fwd.logits, np.asarray(ids))
    t0 = time.perf_counter()
    greedy_ours = model.greedy(prompt_ids, N_GREEDY)
    report["numpy_greedy_s"] = round(time.perf_counter() - t0, 3)
    report["numpy"] = {"nll": nll_ours, "ppl": float(np.exp(nll_ours)),
                       "greedy_ids": greedy_ours, "greedy_text": tok.decode(greedy_ours),
                       "round_trip_text": tok.decode(ids) == TEXT,
                       "round_trip_stress": tok.decode(stress_ids) == STRESS_TEXT}

    # --- HuggingFace tokenizers (independent BPE implementation, same vocabulary) ---------------
    try:
        import tokenizers  # noqa: PLC0415
        hf = hf_tokenizer(gm.tokenizer)
        report["versions"]["tokenizers"] = tokenizers.__version__
        report["tokenization_vs_hf_tokenizers"] = {
            "text": agreement(ids, hf.encode(TEXT).ids),
            "stress": agreement(stress_ids, hf.encode(STRESS_TEXT).ids),
            "prompt": agreement(prompt_ids, hf.encode(PROMPT).ids)}
    except Exception as exc:  # noqa: BLE001 - report, do not fail the other checks
        report["tokenization_vs_hf_tokenizers"] = {"error": f"{type(exc).__name__}: {exc}"}

    # --- llama.cpp ------------------------------------------------------------------------------
    try:
        import llama_cpp  # noqa: PLC0415
    except ImportError as exc:
        report["llama_cpp"] = {"error": f"llama-cpp-python not importable: {exc}"}
    else:
        report["versions"]["llama_cpp_python"] = llama_cpp.__version__
        llm = llama_cpp.Llama(path, logits_all=True, n_ctx=512, n_threads=args.threads,
                              n_batch=512, verbose=False)

        def lc_tok(s: str) -> list[int]:
            return llm.tokenize(s.encode("utf-8"), add_bos=False, special=False)

        report["tokenization_vs_llama_cpp"] = {
            "text": agreement(ids, lc_tok(TEXT)), "stress": agreement(stress_ids, lc_tok(STRESS_TEXT)),
            "prompt": agreement(prompt_ids, lc_tok(PROMPT))}
        report["llama_cpp"] = compare_llama_cpp(llm, ids, ours, prompt_ids, greedy_ours)
        del llm
        if not args.no_f32:
            # The same weights, dequantized, in an all-F32 GGUF: llama.cpp's CPU kernels then do
            # F32 dot products instead of quantizing activations to Q8 for the Q4_1/Q8_0 ones.
            f32_path = args.f32_copy or os.path.join(os.path.dirname(path),
                                                     os.path.basename(path).rsplit(".", 1)[0] + ".f32.gguf")
            if not os.path.isfile(f32_path):
                write_f32_copy(path, f32_path)
            # F32 KV cache (llama.cpp's default is F16) and no flash attention: F32 end to end.
            llm = llama_cpp.Llama(f32_path, logits_all=True, n_ctx=512, n_threads=args.threads,
                                  n_batch=512, verbose=False, flash_attn=False,
                                  type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32)
            report["llama_cpp_f32_weights"] = compare_llama_cpp(llm, ids, ours, prompt_ids, greedy_ours)
            report["llama_cpp_f32_weights"]["gguf"] = os.path.basename(f32_path)
            del llm

    if args.write_reference:
        ref = {
            "command": "scripts/validate_gguf.py --write-reference tests/python/gguf_reference.json",
            "gguf": os.path.basename(path), "gguf_sha256": _sha256(path),
            "text": TEXT, "text_ids": ids, "nll": nll_ours,
            "prompt": PROMPT, "prompt_ids": prompt_ids, "greedy_ids": greedy_ours,
            "greedy_text": tok.decode(greedy_ours),
            "llama_cpp_nll": report.get("llama_cpp", {}).get("nll"),
            "llama_cpp_greedy_ids": report.get("llama_cpp", {}).get("greedy_ids"),
            "versions": report["versions"],
        }
        with open(args.write_reference, "w", encoding="utf-8") as f:
            json.dump(ref, f, indent=1, ensure_ascii=False)
            f.write("\n")
    print(json.dumps(report, indent=1, ensure_ascii=False))
    return 0


def compare_llama_cpp(llm, ids, ours, prompt_ids, greedy_ours) -> dict:
    """Logit / NLL / greedy comparison of our forward with a llama_cpp.Llama on the same ids."""
    # llama.cpp evaluates *our* token ids so that the logit comparison is independent of any
    # tokenization difference (reported separately).
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    lc_s = time.perf_counter() - t0
    theirs = np.array(llm.scores[:len(ids)], dtype=np.float64)
    diff = np.abs(ours - theirs)
    top1_ours, top1_theirs = ours.argmax(-1), theirs.argmax(-1)
    nll_ours, _ = next_token_nll(ours, np.asarray(ids))
    nll_theirs, _ = next_token_nll(theirs, np.asarray(ids))
    # where the top-1 choices differ: gap between llama.cpp's best two logits (near-ties?)
    srt = np.sort(theirs, axis=-1)
    gaps = (srt[:, -1] - srt[:, -2])[top1_ours != top1_theirs]
    greedy_theirs: list[int] = []
    seq = list(prompt_ids)
    for _ in range(len(greedy_ours)):  # greedy by argmax of llama.cpp's logits (no sampler)
        llm.reset()
        llm.eval(seq)
        nxt = int(np.argmax(llm.scores[len(seq) - 1]))
        greedy_theirs.append(nxt)
        seq.append(nxt)
    return {
        "forward_s": round(lc_s, 3),
        "max_abs_logit_diff": float(diff.max()), "mean_abs_logit_diff": float(diff.mean()),
        "logit_std": float(theirs.std()),
        "top1_agreement": float(np.mean(top1_ours == top1_theirs)),
        "top1_disagreements": int(np.sum(top1_ours != top1_theirs)),
        "top1_disagreement_logit_gaps": [round(float(g), 4) for g in gaps],
        "nll": nll_theirs, "ppl": float(np.exp(nll_theirs)), "nll_diff": nll_ours - nll_theirs,
        "greedy_ids": greedy_theirs, "greedy_equal": greedy_theirs == greedy_ours,
    }


def write_f32_copy(src: str, dst: str) -> None:
    """Write `src` with every tensor dequantized to F32 (metadata copied, file_type = ALL_F32)."""
    import gguf  # noqa: PLC0415
    from dumpkv_gguf.reader import dequantize_tensor  # noqa: PLC0415

    reader = gguf.GGUFReader(src, "r")
    arch = reader.fields["general.architecture"].contents()
    tmp = dst + ".tmp"
    writer = gguf.GGUFWriter(tmp, arch)
    for name, fld in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        val = fld.contents()
        if name == "general.file_type":
            val = int(gguf.LlamaFileType.ALL_F32)
        sub = fld.types[1] if len(fld.types) > 1 else None
        writer.add_key_value(name, val, fld.types[0], sub)
    for t in reader.tensors:
        writer.add_tensor(t.name, dequantize_tensor(t))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, dst)


def _sha256(path: str) -> str:
    import hashlib  # noqa: PLC0415
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dist_version(name: str):
    try:
        from importlib.metadata import version  # noqa: PLC0415
        return version(name)
    except Exception:  # noqa: BLE001
        return None


if __name__ == "__main__":
    sys.exit(main())
