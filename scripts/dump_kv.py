#!/usr/bin/env python3
"""Run a real LLM over text and write its KV cache to a tq KV dump (HDF5).

Examples
  scripts/dump_kv.py --model ../shared/models/stories260K.bin --tokenizer ../shared/models/tok512.bin \\
      --text data/stories260K_text.txt --grads --out data/stories260K.h5
  scripts/dump_kv.py --model ../shared/models/stories260K.bin --prompt Zoo --generate 40

  scripts/dump_kv.py --model .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf --text data/smollm2_a.txt \
      --grads --dtype fp16 --compress --out smollm2.h5

  scripts/dump_kv.py --backend hf --model path/to/hf-model-dir --text data/stories260K_text.txt \\
      --max-tokens 512 --grads --out model.h5

Backends: llama2c (llama2.c legacy .bin, pure numpy); hf (Hugging Face transformers causal LM,
needs torch + transformers, offline: a local directory or a model already in the hub cache);
gguf (llama-family GGUF file, pure numpy on the dequantized weights, needs the `gguf` package). How to dump your own model: docs/dump-your-model.md.
Errors in the inputs print one line and exit with status 1 without writing anything.
The dump format is specified in docs/kv-dump-format.md.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dumpkv import VERSION  # noqa: E402
from dumpkv.backend import BACKENDS, detect_backend, make_backend  # noqa: E402
from dumpkv.errors import DumpError, NotImplementedBackend  # noqa: E402
from dumpkv.writer import DTYPES, check_writable, write_dump  # noqa: E402

PROG = "dump_kv.py"


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=BACKENDS,
                   help="model family (default: from --model: .bin llama2c, .gguf gguf, else hf)")
    p.add_argument("--model", required=True, help="checkpoint file or directory")
    p.add_argument("--tokenizer", help="llama2.c tokenizer (tok*.bin); default: tok<vocab>.bin "
                   "or tokenizer.bin next to the model. hf: a tokenizer directory (default: the "
                   "model's) or a llama2.c tok*.bin")
    p.add_argument("--device", default="cpu", help="hf: torch device (default cpu)")
    p.add_argument("--hf-dtype", choices=("fp32", "bf16", "fp16", "fp64"), default="fp32",
                   help="hf: compute dtype of the forward/backward pass (default fp32)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text", metavar="FILE", help="UTF-8 text file to run over "
                     "(leading/trailing whitespace is stripped)")
    src.add_argument("--prompt", metavar="STR", help="text given on the command line")
    p.add_argument("--max-tokens", type=int, metavar="N",
                   help="keep only the first N tokens (BOS included); without it, text longer "
                   "than the model's context is an error")
    p.add_argument("--grads", action="store_true",
                   help="also store grad2_k, grad2_v: squared gradients of the mean next-token NLL "
                   "w.r.t. post-RoPE K and V")
    p.add_argument("--no-q", action="store_true", help="omit q and q_pre")
    p.add_argument("--no-q-pre", action="store_true",
                   help="omit q_pre only (it equals inverse RoPE of q; saves space)")
    p.add_argument("--dtype", choices=DTYPES, default="fp32",
                   help="storage dtype of q, k, v, q_pre, k_pre (default fp32)")
    p.add_argument("--grad-dtype", choices=DTYPES,
                   help="storage dtype of grad2_k, grad2_v (default: fp32 when --dtype is fp16, "
                   "whose range flushes typical squared gradients of ~1e-8 and below to zero; "
                   "else the same as --dtype)")
    p.add_argument("--compress", action="store_true", help="gzip-compress the datasets")
    p.add_argument("--out", help="output .h5 path (required unless --generate)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--generate", type=int, metavar="N",
                   help="greedy-decode N tokens after the text and print it (validation)")
    p.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    r = p.add_argument_group("closed-loop replay (docs/replay.md; needs the tq Python module; "
                             "llama2c, gguf and hf backends -- hf: rowwise codecs in one "
                             "forward, prefix codecs token by token through a DynamicCache)")
    r.add_argument("--replay", action="append", metavar="SPEC",
                   help="run the model with its KV cache compressed by this tq codec spec and "
                   "compare with the uncompressed run (repeatable); writes no dump")
    r.add_argument("--replay-layers", default="all", metavar="all|each|L1,L2",
                   help="compressed layers: all at once (default), each layer alone (one run per "
                   "layer), or each listed layer alone")
    r.add_argument("--replay-mode", choices=("auto", "rowwise", "prefix"), default="auto",
                   help="rowwise: encode each head once (exact for per-vector codecs); prefix: "
                   "re-encode the cache prefix for every query (exact for KIVI groups/windows); "
                   "auto (default): probe the codec")
    r.add_argument("--replay-seed", type=int, default=0, metavar="S",
                   help="run seed; codec seeds are tq.seed_for(S, layer, head, tensor) as in the "
                   "tq CLI (default 0, the CLI's default)")
    r.add_argument("--replay-proxies", action="store_true",
                   help="also report open-loop proxies (NMSE, ip_rms, attn_kl on the uncompressed "
                   "run's K/V/Q) and their Spearman rank correlation with KL across codecs")
    r.add_argument("--replay-format", choices=("table", "md", "csv", "json"), default="table",
                   help="report format (default table)")
    r.add_argument("--replay-out", metavar="FILE",
                   help="write the report here instead of stdout (refused if it exists, unless --force)")
    r.add_argument("--replay-per-token", metavar="FILE.csv",
                   help="write per-token rows (nll, KL, top-1, p of the next token) of every run")
    r.add_argument("--tokens-from", metavar="DUMP",
                   help="replay the token stream of this tq dump (checked against the model: "
                   "layers, kv heads, head_dim and layer 0's K) instead of --text/--prompt")
    args = p.parse_args(argv)
    if args.replay:
        if args.out is not None or args.generate is not None or args.grads:
            p.error("--replay writes no dump: --out, --grads and --generate do not apply")
        if (args.text is None) == (args.prompt is None) and args.tokens_from is None:
            p.error("--replay needs one of --text, --prompt or --tokens-from")
        if args.tokens_from is not None and (args.text is not None or args.prompt is not None):
            p.error("--tokens-from replaces --text/--prompt")
        if args.max_tokens is not None and args.max_tokens < 2:
            p.error("--max-tokens must be >= 2 with --replay")
        return args
    if args.tokens_from is not None:
        p.error("--tokens-from only applies with --replay")
    if args.text is None and args.prompt is None:
        p.error("one of the arguments --text --prompt is required")
    if args.grad_dtype is None:
        args.grad_dtype = "fp32" if args.dtype == "fp16" else args.dtype
    if args.out is None and args.generate is None:
        p.error("--out is required (or --generate N to only print a greedy continuation)")
    if args.max_tokens is not None and args.max_tokens < 1:
        p.error("--max-tokens must be >= 1")
    if args.generate is not None and args.generate < 0:
        p.error("--generate must be >= 0")
    return args


def read_text(args):
    if args.prompt is not None:
        return args.prompt, "command line --prompt"
    if not os.path.isfile(args.text):
        raise DumpError(f"{args.text}: text file not found")
    try:
        with open(args.text, encoding="utf-8") as f:
            return f.read().strip(), os.path.basename(args.text)
    except UnicodeDecodeError as e:
        raise DumpError(f"{args.text}: not UTF-8 text ({e.reason} at byte {e.start})")


def run_replay(args):
    from dumpkv import replay as rp
    for path in (args.replay_out, args.replay_per_token):
        if path is not None:
            check_writable(path, args.force)
    name = args.backend or detect_backend(args.model)
    if name not in ("llama2c", "gguf", "hf"):
        raise DumpError(f"--replay: backend '{name}' is not supported (llama2c, gguf, hf)")
    rp.import_tq()  # fails early when the module is not built
    options = dict(device=args.device, compute_dtype=args.hf_dtype) if name == "hf" else {}
    backend = make_backend(name, **options)
    backend.load(args.model, args.tokenizer)
    n_layers, _, n_dim = rp.model_geometry(backend)
    rp.parse_layers(args.replay_layers, n_layers)
    rp.make_banks(args.replay, n_dim, args.replay_seed)  # bad specs fail before any model run
    if args.tokens_from is not None:
        ids, k0 = rp.check_dump_matches(args.tokens_from, backend)
        source = os.path.basename(args.tokens_from)
    else:
        text, source = read_text(args)
        ids = backend.tokenize(text)
        k0 = None
    ctx = backend.context_length
    if args.max_tokens is not None:
        ids = ids[:args.max_tokens]
    if len(ids) > ctx:
        raise DumpError(f"{source}: {len(ids)} tokens exceed the model's context of {ctx}; "
                        "pass --max-tokens")
    if k0 is not None:
        _, ks, _, _ = rp.forward(backend, ids, want_kv=True)
        mine = np.asarray(ks[0], dtype=np.float64)[:, :k0.shape[1]]
        err = float(np.sqrt(np.mean((mine - k0[:, :mine.shape[1]]) ** 2) / max(np.mean(mine ** 2), 1e-30)))
        if not err < 2e-2:
            raise DumpError(f"{args.tokens_from}: dump does not match the model (layer 0 K differs "
                            f"from the model's by relative RMS {err:.3g} on its own tokens)")
    log = None if args.replay_out is None and args.replay_format != "table" else \
        (lambda m: print(f"{PROG}: {m}", file=sys.stderr))
    res = rp.replay(backend, ids, args.replay, layers_arg=args.replay_layers, seed=args.replay_seed,
                    mode=args.replay_mode, want_proxies=args.replay_proxies, log=log)
    meta = dict(model=backend.metadata()["model_name"], backend=name, text_source=source,
                replay_layers=args.replay_layers, replay_mode=args.replay_mode)
    report = rp.render(res, args.replay_format, meta)
    if args.replay_out is not None:
        atomic_write(args.replay_out, report)
    else:
        sys.stdout.write(report)
    if args.replay_per_token is not None:
        atomic_write(args.replay_per_token, rp.per_token_csv(res))
    return 0


def atomic_write(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def run(args):
    if args.replay:
        return run_replay(args)
    if args.out is not None:
        check_writable(args.out, args.force)  # fail before the (possibly long) model run
    name = args.backend or detect_backend(args.model)
    options = dict(device=args.device, compute_dtype=args.hf_dtype) if name == "hf" else {}
    backend = make_backend(name, **options)
    backend.load(args.model, args.tokenizer)
    text, text_source = read_text(args)
    ids = backend.tokenize(text)
    ctx = backend.context_length
    if args.max_tokens is not None:
        if args.max_tokens > ctx:
            raise DumpError(f"--max-tokens {args.max_tokens} exceeds the model's context of {ctx}")
        ids = ids[:args.max_tokens]
    elif len(ids) > ctx:
        raise DumpError(f"{text_source}: {len(ids)} tokens (BOS included) exceed the model's "
                        f"context of {ctx}; shorten the text or pass --max-tokens")
    if args.grads and len(ids) < 2:
        raise DumpError("--grads needs at least 2 tokens (one predicted token)")

    if args.generate is not None:
        out_ids = backend.generate(ids, args.generate)
        print(backend.detokenize(out_ids))
        if args.out is None:
            return 0

    cap = backend.capture(ids, want_q=not args.no_q, want_grads=args.grads)
    if args.no_q_pre:
        for ld in cap.layers:
            ld.tensors.pop("q_pre", None)
    meta = backend.metadata()
    meta["text_source"] = text_source
    if args.prompt is not None:
        meta["prompt"] = args.prompt
    meta["mean_nll"] = f"{cap.mean_nll:.6f}"
    if args.grads:
        meta["grad2_objective"] = ("mean over the n_tokens-1 predicted positions of the "
                                   "next-token negative log-likelihood (nats)")
    write_dump(args.out, cap, meta, dtype=args.dtype, grad_dtype=args.grad_dtype,
               compress=args.compress, force=args.force)
    size = os.path.getsize(args.out)
    dtypes = args.dtype + (f" (grads {args.grad_dtype})" if args.grads else "")
    print(f"{PROG}: wrote {args.out}: {len(ids)} tokens, {len(cap.layers)} layers, "
          f"{dtypes}, {size} bytes, mean NLL {cap.mean_nll:.4f} nats", file=sys.stderr)
    return 0


def main(argv=None):
    args = parse_args(argv)
    try:
        return run(args)
    except NotImplementedBackend as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except DumpError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{PROG}: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
