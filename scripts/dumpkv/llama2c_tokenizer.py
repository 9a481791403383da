"""The llama2.c tokenizer (tokenizer.bin / tok<N>.bin), encoding and decoding exactly as run.c.

File: int32 max_token_length, then for each of vocab_size tokens: float32 score, int32 length,
that many bytes. Ids 0, 1, 2 are <unk>, BOS, EOS; byte-fallback tokens "<0xXX>" sit at id byte+3.

encode: BOS, then a dummy-prefix " " token (when the text is non-empty), then one token per UTF-8
code point (or its bytes as <0xXX> tokens when the code point is not in the vocabulary), then
repeatedly merge the adjacent pair whose concatenation is the vocabulary entry of highest score
(leftmost on ties) until no pair merges.
decode: a token's text, minus a leading space right after BOS, with <0xXX> turned into the byte.
"""
import os
import re
import struct

from .errors import DumpError

BOS, EOS = 1, 2
BYTE_TOKEN_OFFSET = 3
_BYTE_RE = re.compile(rb"^<0x([0-9A-Fa-f]{2})>$")


class Llama2cTokenizer:
    def __init__(self, pieces, scores, max_token_length):
        self.pieces = pieces          # list[bytes]
        self.scores = scores          # list[float] (float32 values)
        self.max_token_length = max_token_length
        self.lookup = {}
        for i, p in enumerate(pieces):
            self.lookup.setdefault(p, i)

    @classmethod
    def load(cls, path, vocab_size):
        name = os.fspath(path)
        if not os.path.isfile(name):
            raise DumpError(f"{name}: tokenizer file not found")
        data = open(name, "rb").read()
        if len(data) < 4:
            raise DumpError(f"{name}: too short for a llama2.c tokenizer")
        (max_len,) = struct.unpack_from("<i", data, 0)
        off, pieces, scores = 4, [], []
        for i in range(vocab_size):
            if off + 8 > len(data):
                raise DumpError(f"{name}: ends after {i} tokens, the model has {vocab_size}")
            score, n = struct.unpack_from("<fi", data, off)
            off += 8
            if n < 0 or off + n > len(data):
                raise DumpError(f"{name}: token {i} has invalid length {n}")
            pieces.append(data[off:off + n])
            scores.append(score)
            off += n
        if off != len(data):
            raise DumpError(f"{name}: {len(data) - off} bytes left after {vocab_size} tokens "
                            "(tokenizer does not match the model's vocabulary size)")
        return cls(pieces, scores, max_len)

    def save(self, path):
        with open(path, "wb") as f:
            f.write(struct.pack("<i", self.max_token_length))
            for p, s in zip(self.pieces, self.scores):
                f.write(struct.pack("<fi", s, len(p)) + p)

    def encode(self, text, bos=True):
        ids = [BOS] if bos else []
        if text:
            space = self.lookup.get(b" ")
            if space is None:
                raise DumpError("tokenizer has no ' ' token for the dummy prefix")
            ids.append(space)
        for ch in text:
            b = ch.encode("utf-8")
            tid = self.lookup.get(b)
            if tid is not None:
                ids.append(tid)
                continue
            for byte in b:  # byte fallback
                tid = byte + BYTE_TOKEN_OFFSET
                if tid >= len(self.pieces) or not _BYTE_RE.match(self.pieces[tid]):
                    raise DumpError(f"character {ch!r} is not in the tokenizer's vocabulary "
                                    "and it has no byte tokens")
                ids.append(tid)
        while True:
            best_score, best_id, best_idx = -1e10, -1, -1
            for i in range(len(ids) - 1):
                tid = self.lookup.get(self.pieces[ids[i]] + self.pieces[ids[i + 1]])
                if tid is not None and self.scores[tid] > best_score:
                    best_score, best_id, best_idx = self.scores[tid], tid, i
            if best_idx < 0:
                break
            ids[best_idx:best_idx + 2] = [best_id]
        return ids

    def decode_piece(self, prev, tid):
        piece = self.pieces[tid]
        if prev == BOS and piece.startswith(b" "):
            piece = piece[1:]
        m = _BYTE_RE.match(piece)
        return bytes([int(m.group(1), 16)]) if m else piece

    def decode(self, ids):
        """Text of ids[1:] given ids[0] as context (normally BOS), like run.c's printing loop."""
        out = b"".join(self.decode_piece(ids[i - 1], ids[i]) for i in range(1, len(ids)))
        return out.decode("utf-8", errors="replace")
