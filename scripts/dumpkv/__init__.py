"""dumpkv: the pieces behind scripts/dump_kv.py.

Runs a real LLM over text and writes its KV cache (plus Q, pre-RoPE tensors and squared
loss gradients) to an HDF5 file in tq's dump format (docs/kv-dump-format.md).

Modules
  errors            DumpError: one-line, user-facing failures (the CLI prints them, exit code 1)
  backend           the Backend interface every model family implements, and backend selection
  rope              rotary position embedding (interleaved and half pairing), forward and inverse
  llama_numpy       a Llama-family transformer in numpy: forward with K/V capture and override,
                    and the analytic backward pass of the mean next-token NLL down to every K, V
  llama2c_format    reading llama2.c legacy checkpoints (.bin)
  llama2c_tokenizer the llama2.c tokenizer (tok*.bin): encode/decode exactly as run.c does
  llama2c_backend   Backend for llama2.c checkpoints
  writer            the dump writer shared by all backends (dtype conversion, atomic write)
"""

VERSION = "0.1.0"
CREATOR = f"tq dump_kv.py {VERSION}"
