"""Converting a llama2.c checkpoint into a Hugging Face ``LlamaForCausalLM``.

The two implementations compute the same network except for how RoPE pairs the coordinates of a
head vector of size d:
    llama2.c      pairs (2i, 2i+1)          ("interleaved")
    transformers  pairs (i, i + d/2)        ("half", rotate_half)
with the same frequency theta^(-2i/d) for pair i. Permuting the output rows of Wq and Wk within
every head by P = [0, 2, 4, ..., d-2, 1, 3, ..., d-1] moves llama2.c's pair (2i, 2i+1) to the
positions (i, i + d/2), so HF's rotate_half RoPE on the permuted projections equals llama2.c's
interleaved RoPE followed by the same permutation:  q_hf[..., j] = q_llama2c[..., P[j]]  (and the
same for k, pre- and post-RoPE). Scores q.k are sums over all coordinates, so they, the attention
output and everything downstream are unchanged; Wv and Wo are copied as they are.

Weight names (llama2.c -> transformers):
    tok_emb -> model.embed_tokens.weight          rms_att[l] -> layers.l.input_layernorm.weight
    wq[l]   -> layers.l.self_attn.q_proj.weight (rows permuted)
    wk[l]   -> layers.l.self_attn.k_proj.weight (rows permuted)
    wv[l]   -> layers.l.self_attn.v_proj.weight   wo[l] -> layers.l.self_attn.o_proj.weight
    rms_ffn[l] -> layers.l.post_attention_layernorm.weight
    w1[l] -> mlp.gate_proj, w3[l] -> mlp.up_proj, w2[l] -> mlp.down_proj
    rms_final -> model.norm.weight                wcls -> lm_head.weight (tied when shared)

The numpy part (permutation, config and state dict) needs no torch; ``save_hf_model`` and the
command line need torch and transformers:
    cd scripts && python -m dumpkv.llama2c_to_hf stories260K.bin out_dir/
"""
import argparse
import sys

import numpy as np

from .errors import DumpError
from .llama2c_format import read_checkpoint

LLAMA2C_BOS, LLAMA2C_EOS = 1, 2      # llama2.c's sentencepiece ids
LLAMA2C_NORM_EPS = 1e-5
LLAMA2C_ROPE_THETA = 10000.0


def interleaved_to_half_perm(head_dim):
    """P with x_half[..., j] = x_interleaved[..., P[j]]: [0, 2, ..., d-2, 1, 3, ..., d-1]."""
    if head_dim % 2:
        raise ValueError(f"head_dim {head_dim} is odd")
    return np.concatenate([np.arange(0, head_dim, 2), np.arange(1, head_dim, 2)])


def permute_heads_rows(w, n_heads, head_dim):
    """Rows of w [n_heads*head_dim, in] permuted by P within each head."""
    perm = interleaved_to_half_perm(head_dim)
    rows = (np.arange(n_heads)[:, None] * head_dim + perm[None, :]).reshape(-1)
    return np.ascontiguousarray(w[rows])


def is_shared_classifier(weights):
    return weights.wcls is weights.tok_emb or np.shares_memory(weights.wcls, weights.tok_emb)


def hf_config_kwargs(config, shared):
    """Keyword arguments of transformers.LlamaConfig for a llama2.c model."""
    return dict(vocab_size=config.vocab_size, hidden_size=config.dim,
                intermediate_size=config.hidden_dim, num_hidden_layers=config.n_layers,
                num_attention_heads=config.n_heads, num_key_value_heads=config.n_kv_heads,
                head_dim=config.head_dim, max_position_embeddings=config.seq_len,
                rms_norm_eps=LLAMA2C_NORM_EPS, hidden_act="silu", attention_bias=False,
                mlp_bias=False, tie_word_embeddings=bool(shared), bos_token_id=LLAMA2C_BOS,
                eos_token_id=LLAMA2C_EOS, rope_theta=LLAMA2C_ROPE_THETA)


def hf_state_dict(config, weights):
    """{transformers parameter name: float32 numpy array} for LlamaForCausalLM."""
    hd = config.head_dim
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    sd = {"model.embed_tokens.weight": f32(weights.tok_emb),
          "model.norm.weight": f32(weights.rms_final),
          "lm_head.weight": f32(weights.wcls)}
    for l in range(config.n_layers):
        p = f"model.layers.{l}."
        sd[p + "input_layernorm.weight"] = f32(weights.rms_att[l])
        sd[p + "self_attn.q_proj.weight"] = f32(permute_heads_rows(weights.wq[l], config.n_heads,
                                                                   hd))
        sd[p + "self_attn.k_proj.weight"] = f32(permute_heads_rows(weights.wk[l], config.n_kv_heads,
                                                                   hd))
        sd[p + "self_attn.v_proj.weight"] = f32(weights.wv[l])
        sd[p + "self_attn.o_proj.weight"] = f32(weights.wo[l])
        sd[p + "post_attention_layernorm.weight"] = f32(weights.rms_ffn[l])
        sd[p + "mlp.gate_proj.weight"] = f32(weights.w1[l])
        sd[p + "mlp.up_proj.weight"] = f32(weights.w3[l])
        sd[p + "mlp.down_proj.weight"] = f32(weights.w2[l])
    return sd


def build_hf_model(config, weights):
    """A float32 transformers LlamaForCausalLM with the llama2.c weights (needs torch)."""
    import torch
    import transformers

    shared = is_shared_classifier(weights)
    hf_config = transformers.LlamaConfig(**hf_config_kwargs(config, shared))
    model = transformers.LlamaForCausalLM(hf_config).to(torch.float32)
    sd = {k: torch.from_numpy(v) for k, v in hf_state_dict(config, weights).items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    # the tied lm_head may be reported missing: it is the embedding itself
    missing = [m for m in missing if not (shared and m == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    return model.eval()


def save_hf_model(llama2c_path, out_dir):
    """Reads a llama2.c checkpoint and writes a transformers model directory (safetensors)."""
    config, weights = read_checkpoint(llama2c_path)
    model = build_hf_model(config, weights)
    model.save_pretrained(out_dir)
    return model


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m dumpkv.llama2c_to_hf",
                                description="Convert a llama2.c legacy checkpoint into a Hugging "
                                "Face LlamaForCausalLM directory (RoPE rows permuted to HF's "
                                "half pairing).")
    p.add_argument("checkpoint", help="llama2.c .bin")
    p.add_argument("out_dir", help="output directory (config.json + model.safetensors)")
    args = p.parse_args(argv)
    try:
        import torch  # noqa: F401  (fail early, with one line)
        import transformers  # noqa: F401
    except ImportError as e:
        print(f"llama2c_to_hf: error: needs torch and transformers ({e})", file=sys.stderr)
        return 1
    try:
        save_hf_model(args.checkpoint, args.out_dir)
    except DumpError as e:
        print(f"llama2c_to_hf: error: {e}", file=sys.stderr)
        return 1
    print(f"llama2c_to_hf: wrote {args.out_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
