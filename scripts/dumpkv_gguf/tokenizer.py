"""Byte-level BPE tokenizer (GPT-2 family) driven by a GGUF file's own vocabulary and merges.

The pipeline, as used by GPT-2-style models such as SmolLM2:

1. optional split on special tokens (only with ``parse_special=True``; llama.cpp's
   ``tokenize(..., special=False)`` and this default both treat "<|im_start|>" as plain text),
2. pre-tokenization: the text is cut into "words" by a regular expression (for ``pre = "smollm"``
   every decimal digit is first isolated, as HF's ``Digits(individual_digits=True)`` does),
3. each word's UTF-8 bytes are mapped to printable unicode characters (GPT-2's byte-to-unicode
   table, so that e.g. a space becomes "Ġ"),
4. BPE: repeatedly merge the adjacent symbol pair with the lowest merge rank (rank = position in
   ``tokenizer.ggml.merges``) until no adjacent pair has a rank,
5. each final symbol is looked up in ``tokenizer.ggml.tokens``.

The regular expressions need Unicode property classes (\\p{L}, \\p{N}); the ``regex`` module
provides them.  Without it, an equivalent pattern for the standard ``re`` module is built from
``unicodedata`` categories (same Unicode database as the interpreter).
"""

from __future__ import annotations

import functools
import re as _re
import sys
import unicodedata
from typing import Iterable, Sequence

try:
    import regex as _regex  # type: ignore
except ImportError:  # pragma: no cover - depends on the environment
    _regex = None

# GGUF token types (llama.cpp's llama_token_type / gguf.TokenType).
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

# GPT-2's pre-tokenizer: contractions, optional-space + letters, optional-space + numbers,
# optional-space + other symbols, whitespace not followed by non-space, remaining whitespace.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
DIGIT_PATTERN = r"\p{N}"

# tokenizer.ggml.pre -> list of patterns applied in sequence (each splits the pieces of the last).
PRE_TOKENIZERS: dict[str, tuple[str, ...]] = {
    "default": (GPT2_PATTERN,),
    "gpt-2": (GPT2_PATTERN,),
    "gpt2": (GPT2_PATTERN,),
    # SmolLM / StarCoder: HF Sequence[Digits(individual_digits=True), ByteLevel(use_regex=True)].
    "smollm": (DIGIT_PATTERN, GPT2_PATTERN),
    "starcoder": (DIGIT_PATTERN, GPT2_PATTERN),
}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table.

    The 188 bytes that are printable Latin-1 characters ('!'..'~', '¡'..'¬', '®'..'ÿ') map to
    themselves; the remaining 68 (controls, space, DEL, NBSP, soft hyphen) map, in byte order,
    to U+0100, U+0101, ...  So 0x20 (space) -> 'Ġ' (U+0120) and 0x0A -> 'Ċ' (U+010A).
    """
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@functools.lru_cache(maxsize=None)
def _category_class(prefix: str) -> str:
    """A character class body listing every code point whose category starts with `prefix`."""
    ranges: list[tuple[int, int]] = []
    start = prev = None
    for cp in range(sys.maxunicode + 1):
        if unicodedata.category(chr(cp)).startswith(prefix):
            if start is None:
                start = cp
            elif cp != prev + 1:
                ranges.append((start, prev))
                start = cp
            prev = cp
        # (code points outside the category just close the running range lazily above)
    if start is not None:
        ranges.append((start, prev))

    def esc(cp: int) -> str:
        return f"\\U{cp:08x}"

    return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges)


def to_stdlib_pattern(pattern: str) -> str:
    """Rewrite \\p{L} / \\p{N} (inside or outside [...]) for the standard `re` module."""
    letters, numbers = _category_class("L"), _category_class("N")
    out, i, in_class = [], 0, False
    while i < len(pattern):
        if pattern.startswith(r"\p{L}", i) or pattern.startswith(r"\p{N}", i):
            body = letters if pattern[i + 3] == "L" else numbers
            out.append(body if in_class else f"[{body}]")
            i += 5
            continue
        ch = pattern[i]
        if ch == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if ch == "[":
            in_class = True
        elif ch == "]":
            in_class = False
        out.append(ch)
        i += 1
    return "".join(out)


def compile_pattern(pattern: str, use_regex_module: bool | None = None):
    """Compile with `regex` when available (or requested), else with the stdlib fallback."""
    if use_regex_module is None:
        use_regex_module = _regex is not None
    if use_regex_module:
        if _regex is None:
            raise ImportError("the `regex` module is not installed")
        return _regex.compile(pattern)
    return _re.compile(to_stdlib_pattern(pattern))


class ByteLevelBPETokenizer:
    """GPT-2-style byte-level BPE over an explicit vocabulary and merge list.

    tokens: id -> token string (byte-level unicode alphabet); merges: "left right" strings in
    priority order; token_types: GGUF token types (CONTROL / USER_DEFINED tokens are the special
    tokens recognised with parse_special=True).
    """

    def __init__(self, tokens: Sequence[str], merges: Sequence[str], *, pre: str = "default",
                 token_types: Sequence[int] | None = None, bos_token_id: int | None = None,
                 eos_token_id: int | None = None, add_bos: bool = False,
                 use_regex_module: bool | None = None):
        if pre not in PRE_TOKENIZERS:
            raise ValueError(f"tokenizer.ggml.pre '{pre}' is not supported (supported: "
                             f"{', '.join(sorted(PRE_TOKENIZERS))})")
        self.tokens = list(tokens)
        self.token_to_id = {t: i for i, t in enumerate(self.tokens)}
        self.ranks: dict[tuple[str, str], int] = {}
        for rank, m in enumerate(merges):
            left, sep, right = m.partition(" ")
            if not sep:
                raise ValueError(f"tokenizer.ggml.merges[{rank}] = {m!r} is not 'left right'")
            self.ranks.setdefault((left, right), rank)
        self.pre = pre
        self.patterns = [compile_pattern(p, use_regex_module) for p in PRE_TOKENIZERS[pre]]
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self.token_types = list(token_types) if token_types is not None else None
        self.bos_token_id, self.eos_token_id, self.add_bos = bos_token_id, eos_token_id, add_bos
        specials = []
        if self.token_types is not None:
            specials = [self.tokens[i] for i, t in enumerate(self.token_types)
                        if t in (TOKEN_CONTROL, TOKEN_USER_DEFINED)]
        # longest first so that a special token that prefixes another does not win
        specials.sort(key=len, reverse=True)
        self.special_re = _re.compile("|".join(_re.escape(s) for s in specials)) if specials else None
        self._cache: dict[str, tuple[int, ...]] = {}

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_gguf_metadata(cls, tok: dict, **kw) -> "ByteLevelBPETokenizer":
        """Build from reader.GGUFModel.tokenizer (the dict read from tokenizer.ggml.*)."""
        if tok.get("model") not in ("gpt2",):
            raise ValueError(f"tokenizer.ggml.model '{tok.get('model')}' is not supported "
                             "(only byte-level BPE 'gpt2')")
        if not tok.get("tokens") or tok.get("merges") is None:
            raise ValueError("tokenizer.ggml.tokens / tokenizer.ggml.merges missing from the GGUF")
        return cls(tok["tokens"], tok["merges"], pre=tok.get("pre") or "default",
                   token_types=tok.get("token_type"), bos_token_id=tok.get("bos_token_id"),
                   eos_token_id=tok.get("eos_token_id"), add_bos=bool(tok.get("add_bos_token")),
                   **kw)

    # -- encoding ----------------------------------------------------------------------------
    def pre_tokenize(self, text: str) -> list[str]:
        pieces = [text]
        for pat in self.patterns:
            nxt: list[str] = []
            for piece in pieces:
                # Like HF's Split(behavior="isolated"): matches become pieces, and any text the
                # pattern does not cover between matches is kept as a piece of its own.
                pos = 0
                for m in pat.finditer(piece):
                    if m.start() > pos:
                        nxt.append(piece[pos:m.start()])
                    if m.end() > m.start():
                        nxt.append(m.group())
                    pos = m.end()
                if pos < len(piece):
                    nxt.append(piece[pos:])
            pieces = nxt
        return pieces

    def bpe(self, word: str) -> list[str]:
        """Merge the symbols of one byte-mapped word by ascending merge rank."""
        symbols = list(word)
        ranks = self.ranks
        while len(symbols) > 1:
            best_rank, best_i = None, -1
            for i in range(len(symbols) - 1):
                r = ranks.get((symbols[i], symbols[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best_rank, best_i = r, i
            if best_rank is None:
                break
            pair = (symbols[best_i], symbols[best_i + 1])
            # merge every non-overlapping occurrence of the best pair, left to right
            merged: list[str] = []
            i = 0
            while i < len(symbols):
                if i < len(symbols) - 1 and symbols[i] == pair[0] and symbols[i + 1] == pair[1]:
                    merged.append(pair[0] + pair[1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return symbols

    def _encode_word(self, word: str) -> tuple[int, ...]:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        mapped = "".join(self.byte_encoder[b] for b in word.encode("utf-8"))
        ids = []
        for sym in self.bpe(mapped):
            tid = self.token_to_id.get(sym)
            if tid is None:
                raise ValueError(f"BPE symbol {sym!r} (from {word!r}) is not in the vocabulary")
            ids.append(tid)
        out = tuple(ids)
        self._cache[word] = out
        return out

    def _encode_plain(self, text: str) -> list[int]:
        ids: list[int] = []
        for word in self.pre_tokenize(text):
            ids.extend(self._encode_word(word))
        return ids

    def encode(self, text: str, *, add_bos: bool | None = None, parse_special: bool = False) -> list[int]:
        ids: list[int] = []
        if (self.add_bos if add_bos is None else add_bos):
            if self.bos_token_id is None:
                raise ValueError("add_bos requested but the GGUF has no tokenizer.ggml.bos_token_id")
            ids.append(int(self.bos_token_id))
        if parse_special and self.special_re is not None:
            pos = 0
            for m in self.special_re.finditer(text):
                ids.extend(self._encode_plain(text[pos:m.start()]))
                ids.append(self.token_to_id[m.group()])
                pos = m.end()
            ids.extend(self._encode_plain(text[pos:]))
        else:
            ids.extend(self._encode_plain(text))
        return ids

    # -- decoding ----------------------------------------------------------------------------
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        out = bytearray()
        for i in ids:
            tok = self.tokens[int(i)]
            if self.token_types is not None and self.token_types[int(i)] in (TOKEN_CONTROL, TOKEN_USER_DEFINED):
                out += tok.encode("utf-8")
                continue
            for ch in tok:
                b = self.byte_decoder.get(ch)
                out += ch.encode("utf-8") if b is None else bytes((b,))
        return bytes(out)

    def decode(self, ids: Iterable[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)
