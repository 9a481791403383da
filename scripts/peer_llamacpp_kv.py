#!/usr/bin/env python3
"""The peer on real damage: llama.cpp's own quantized KV caches, run through llama-cpp-python.

Runs a GGUF model over a token stream once with llama.cpp's f16 KV cache (the reference) and once
per requested cache type (`type_k` / `type_v`, e.g. q8_0, q4_0; flash attention on, which
llama.cpp needs for a quantized V cache), and compares the next-token distributions exactly like
`scripts/dump_kv.py --replay` does (same per-token statistics code, scripts/dumpkv/replay.py):
ΔPPL with the paired standard error, KL (nats, float64), top-1 agreement, RMS Δp.

The tokens are the ones tq's replay uses: the GGUF backend's tokenizer on --text, or the
/tokens/ids of a dump (--tokens-from). llama.cpp evaluates the whole stream as one batch: each
token's K/V is written to the (quantized) cache before attention reads it, as in tq's rowwise
replay. The llama.cpp vendored by llama-cpp-python 0.3.36 rotates K and V by a Hadamard transform
before quantizing them into the cache ("attention rotation", on by default for quantized caches);
--no-attn-rot turns it off (LLAMA_ATTN_ROT_DISABLE=1), which gives plain q4_0 / q8_0 blocks.

    scripts/peer_llamacpp_kv.py --model "$(scripts/fetch_smollm2.sh)" --tokens-from data/smollm2_a.h5 \\
        --cache q8_0 --cache q4_0 --format md

Needs `llama-cpp-python` in the venv (builds llama.cpp from source: slow).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dumpkv import replay as rp  # noqa: E402
from dumpkv.errors import DumpError  # noqa: E402

PROG = "peer_llamacpp_kv.py"
# bits per element of llama.cpp's block formats (32 elements per block, one fp16 scale [+ min])
CACHE_BITS = {"f16": 16.0, "q8_0": 8.5, "q5_1": 6.0, "q5_0": 5.5, "q4_1": 5.0, "q4_0": 4.5,
              "iq4_nl": 4.5}


def ggml_type(llama_cpp, name):
    attr = "GGML_TYPE_" + name.upper()
    if not hasattr(llama_cpp, attr):
        raise DumpError(f"--cache {name}: llama_cpp has no {attr}")
    return int(getattr(llama_cpp, attr))


def tokens(args):
    if args.tokens_from:
        import h5py
        with h5py.File(args.tokens_from, "r") as f:
            return np.asarray(f["tokens/ids"][()], dtype=np.int64)
    from dumpkv.gguf_backend import GgufBackend
    b = GgufBackend().load(args.model)
    with open(args.text, encoding="utf-8") as f:
        return np.asarray(b.tokenize(f.read().strip()), dtype=np.int64)


def run_llama(llama_cpp, model, ids, type_k, type_v, threads):
    llm = llama_cpp.Llama(model_path=model, n_ctx=max(256, int(len(ids)) + 8), n_batch=512,
                          n_ubatch=512, logits_all=True, type_k=type_k, type_v=type_v,
                          flash_attn=True, n_threads=threads, n_threads_batch=threads,
                          seed=0, verbose=False)
    llm.reset()
    llm.eval([int(t) for t in ids])
    logits = np.array(llm.scores[:len(ids)], dtype=np.float64)
    llm.close() if hasattr(llm, "close") else None
    return logits


def main(argv=None):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="GGUF model file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="UTF-8 text (tokenized by the GGUF backend's tokenizer)")
    src.add_argument("--tokens-from", metavar="DUMP", help="use the /tokens/ids of this tq dump")
    p.add_argument("--cache", action="append", default=None, metavar="TYPE",
                   help="cache type for both K and V (repeatable; default q8_0 and q4_0); "
                   "K:V for different types, e.g. q8_0:q4_0")
    p.add_argument("--no-attn-rot", action="store_true",
                   help="disable llama.cpp's Hadamard rotation of quantized K/V caches (sets "
                   "LLAMA_ATTN_ROT_DISABLE=1; the rotation is on by default in the llama.cpp that "
                   "llama-cpp-python 0.3.36 vendors)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--format", choices=("table", "md", "csv", "json"), default="table")
    p.add_argument("--out", help="write the report here (refused if it exists, unless --force)")
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)
    if args.no_attn_rot:
        os.environ["LLAMA_ATTN_ROT_DISABLE"] = "1"
    else:
        os.environ.pop("LLAMA_ATTN_ROT_DISABLE", None)
    try:
        try:
            import llama_cpp
        except ImportError as e:
            raise DumpError(f"llama-cpp-python is not installed ({e}); scripts/venv llama-cpp-python")
        if args.out and os.path.exists(args.out) and not args.force:
            raise DumpError(f"{args.out}: exists (pass --force to overwrite)")
        ids = tokens(args)
        ref = run_llama(llama_cpp, args.model, ids, ggml_type(llama_cpp, "f16"),
                        ggml_type(llama_cpp, "f16"), args.threads)
        rows = []
        for c in args.cache or ["q8_0", "q4_0"]:
            tk, _, tv = c.partition(":")
            tv = tv or tk
            logits = run_llama(llama_cpp, args.model, ids, ggml_type(llama_cpp, tk),
                               ggml_type(llama_cpp, tv), args.threads)
            row = dict(spec=f"llama.cpp {tk}" + (f"/{tv}" if tv != tk else "") +
                       (" no-rot" if args.no_attn_rot else ""), layers="all",
                       mode="llama.cpp", bits=(CACHE_BITS.get(tk, float("nan")) + CACHE_BITS.get(tv, float("nan"))) / 2)
            row.update(rp.pooled(rp.per_token(ref, logits, ids)))
            rows.append(row)
            print(f"{PROG}: {row['spec']}: dPPL {row['dppl']:+.4f} +- {row['dppl_se']:.4f}, "
                  f"KL {row['kl']:.5f}, top-1 {row['top1']:.3f}", file=sys.stderr)
        res = dict(n_tokens=int(len(ids)), n_predicted=int(len(ids) - 1), seed=0, rows=rows, per_token=[])
        meta = dict(model=os.path.basename(args.model), backend="llama.cpp (llama-cpp-python "
                    f"{getattr(llama_cpp, '__version__', '?')})", tool="peer_llamacpp_kv.py", reference_run="llama.cpp f16 KV cache",
                    text_source=os.path.basename(args.tokens_from or args.text))
        text = rp.render(res, args.format, meta)
        if args.out:
            with open(args.out, "w", encoding="utf-8") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
        return 0
    except DumpError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
