"""Byte-level BPE tokenizer of scripts/dumpkv_gguf/tokenizer.py on hand-made vocabularies."""

from __future__ import annotations

import numpy as np
import pytest

import gguf_naive  # noqa: F401  (puts scripts/ on sys.path)

from dumpkv_gguf.tokenizer import (GPT2_PATTERN, TOKEN_CONTROL, TOKEN_NORMAL, ByteLevelBPETokenizer,
                                   bytes_to_unicode, compile_pattern)

B2U = bytes_to_unicode()
BYTE_TOKENS = [B2U[b] for b in range(256)]

STRESS = ("In 2024, 1,234.56 units cost $7.89 — 12%!  It's we'd've they'll I'm.\n\n\tdef f(x):\n"
          "    return x**2  # c\nnaïve café Ελληνικά 日本語 😀👍🏽 ½ ² Ⅻ ٣   trailing   \n\n")


def test_bytes_to_unicode_table():
    assert len(set(B2U.values())) == 256
    assert B2U[ord(" ")] == "Ġ" and B2U[ord("\n")] == "Ċ" and B2U[ord("\t")] == "ĉ"
    assert B2U[ord("A")] == "A" and B2U[0xE9] == "é"
    # the non-printable bytes map in order to U+0100..U+0143
    moved = sorted(c for b, c in B2U.items() if chr(b) != c)
    assert moved == [chr(0x100 + i) for i in range(68)]


def _lowest_tokenizer(**kw):
    merges = ["l o", "lo w", "e r", "Ġ low", "Ġlow er", "e s", "es t"]
    extra = ["lo", "low", "er", "Ġlow", "Ġlower", "es", "est"]
    return ByteLevelBPETokenizer(BYTE_TOKENS + extra, merges, **kw), {t: 256 + i for i, t in enumerate(extra)}


def test_known_merges():
    tok, ids = _lowest_tokenizer()
    # "low" -> lo,w -> low; " lower" -> ... -> Ġlower; " lowest" -> Ġlow + est (no Ġlowe* merge)
    assert tok.encode("low lower lowest") == [ids["low"], ids["Ġlower"], ids["Ġlow"], ids["est"]]
    assert tok.bpe("Ġlowest") == ["Ġlow", "est"]
    # unmerged text falls back to the byte tokens
    assert tok.encode("xé") == [ord("x"), 0xC3, 0xA9]
    assert tok.decode(tok.encode("low lower lowest xé")) == "low lower lowest xé"


def test_merge_rank_order_decides():
    toks = BYTE_TOKENS + ["ab", "bc"]
    first_ab = ByteLevelBPETokenizer(toks, ["a b", "b c"])
    first_bc = ByteLevelBPETokenizer(toks, ["b c", "a b"])
    assert first_ab.encode("abc") == [256, ord("c")]
    assert first_bc.encode("abc") == [ord("a"), 257]
    rep = ByteLevelBPETokenizer(BYTE_TOKENS + ["aa"], ["a a"])
    assert rep.encode("aaaa") == [256, 256]
    assert rep.encode("aaa") == [256, ord("a")]  # leftmost pair first


def test_pre_tokenizers():
    gpt2 = ByteLevelBPETokenizer(BYTE_TOKENS, [], pre="gpt2")
    smol = ByteLevelBPETokenizer(BYTE_TOKENS, [], pre="smollm")
    text = "Hello world's 123  x\n"
    assert gpt2.pre_tokenize(text) == ["Hello", " world", "'s", " 123", " ", " x", "\n"]
    assert smol.pre_tokenize(text) == ["Hello", " world", "'s", " ", "1", "2", "3", " ", " x", "\n"]
    for t in (gpt2, smol):
        assert "".join(t.pre_tokenize(STRESS)) == STRESS
    with pytest.raises(ValueError, match="not supported"):
        ByteLevelBPETokenizer(BYTE_TOKENS, [], pre="qwen2")


def test_stdlib_fallback_matches_regex_module():
    pytest.importorskip("regex")
    fast = compile_pattern(GPT2_PATTERN, use_regex_module=True)
    slow = compile_pattern(GPT2_PATTERN, use_regex_module=False)
    rng = np.random.default_rng(4)
    alphabet = list("aZé ß1٣½²Ⅻ日😀'\n\t.,-_!") + [" ", "  "]
    texts = [STRESS] + ["".join(rng.choice(alphabet, size=40)) for _ in range(50)]
    for t in texts:
        assert fast.findall(t) == slow.findall(t)


def test_round_trip_random_text():
    tok, _ = _lowest_tokenizer(pre="smollm")
    rng = np.random.default_rng(2024)
    pieces = ["low", "er", " ", "st", "lowest", "é", "日本", "😀", "\n", "\t", "9", "'s", "!?", "\u00a0"]
    for _ in range(100):
        text = "".join(rng.choice(pieces, size=int(rng.integers(1, 20))))
        assert tok.decode(tok.encode(text)) == text


def test_special_tokens_and_bos():
    toks = BYTE_TOKENS + ["<|im_start|>", "<|im_end|>"]
    types = [TOKEN_NORMAL] * 256 + [TOKEN_CONTROL, TOKEN_CONTROL]
    tok = ByteLevelBPETokenizer(toks, [], token_types=types, bos_token_id=256)
    plain = tok.encode("<|im_start|>hi")
    assert plain == list(b"<|im_start|>hi")  # special=False: text, as llama.cpp's default
    assert tok.encode("<|im_start|>hi<|im_end|>", parse_special=True) == [256, ord("h"), ord("i"), 257]
    assert tok.encode("hi", add_bos=True) == [256, ord("h"), ord("i")]
    assert tok.decode([256, ord("h")]) == "<|im_start|>h"


@pytest.mark.parametrize("pre", ["gpt2", "smollm"])
def test_matches_hf_tokenizers(pre):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers

    rng = np.random.default_rng(7)
    # a random but consistent merge list: learn merges greedily from a small corpus
    corpus = (STRESS * 3 + "the lower the lowest the newest 1990s lowered lowering ").split(" ")
    words = [[B2U[b] for b in (" " + w).encode()] for w in corpus if w]
    merges, vocab = [], list(BYTE_TOKENS)
    for _ in range(60):
        counts: dict = {}
        for w in words:
            for a, b in zip(w, w[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + 1
        best = max(sorted(counts), key=lambda p: counts[p])
        merges.append(f"{best[0]} {best[1]}")
        vocab.append(best[0] + best[1])
        for w in words:
            i = 0
            while i < len(w) - 1:
                if (w[i], w[i + 1]) == best:
                    w[i:i + 2] = [best[0] + best[1]]
                i += 1
    ours = ByteLevelBPETokenizer(vocab, merges, pre=pre)
    hf = tokenizers.Tokenizer(models.BPE({t: i for i, t in enumerate(vocab)},
                                         [tuple(m.split(" ")) for m in merges]))
    seq = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    if pre == "smollm":
        seq.insert(0, pre_tokenizers.Digits(individual_digits=True))
    hf.pre_tokenizer = pre_tokenizers.Sequence(seq)
    alphabet = list("the lowest new 1990s ") + ["é", "日", "😀", "\n", "  ", "'s"]
    texts = [STRESS, "the lowest lowered 1990s"] + ["".join(rng.choice(alphabet, size=30)) for _ in range(40)]
    for t in texts:
        assert ours.encode(t) == hf.encode(t).ids, t
