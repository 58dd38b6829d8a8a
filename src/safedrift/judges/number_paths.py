"""Every way a judge model can reply with a number 0..100, as token paths, and their probabilities.

Tokenizers write numbers differently: Llama 3 and GPT-style vocabularies have "37" as one token,
Qwen, Gemma and Llama 2 write "3" then "7". Reading the first token's distribution alone turns
a digit-by-digit judge's 0..100 scale into 0..9. So the probability of the reply "37" is that of
its whole token path after the generation prompt, times the probability that the number ends
there (the next token does not start with a digit: end of turn, a space, a full stop...). That
"ends" factor is what separates "3" from "30".."39".

The paths are the tokenizer's own tokenization of each number as the reply, written "37" (Qwen,
Llama 3, Gemma templates) or " 37" (templates whose replies start with a space, the toy world's).
They share prefixes, so they are evaluated as the rows of a trie: one row per path that is no
prefix of another ("100" covers "1" and "10"), and one teacher-forced pass over a row gives the
next-token distribution after each of its prefixes. A non-canonical path ("1" "00" for "100") is
not counted: a model trained on its tokenizer's output gives it next to nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from safedrift.errors import SafedriftError

SCALE = np.arange(101)  # the values a reply can take
SPELLINGS = ("{}", " {}")
DIGITS = frozenset("0123456789")


@dataclass(frozen=True)
class NumberPaths:
    """rows: [R, D] token ids of the trie's rows (right-padded with 0), row_lengths: [R];
    spelling_value/spelling_row/spelling_length: [C] one entry per (number, spelling) path, which
    is the first spelling_length tokens of row spelling_row; ends_number: [V] True for tokens
    that end a number when they follow its last digit.

    The trie's nodes (every distinct prefix, N of them) for a pass that reads them all at once:
    node_token/node_depth: [N] a node's last token and its length; node_sees: [N, N] True where
    node j is node i or one of its prefixes; row_nodes: [R, D] the node of row r's first j+1
    tokens (0 past the row's end)."""

    rows: np.ndarray
    row_lengths: np.ndarray
    spelling_value: np.ndarray
    spelling_row: np.ndarray
    spelling_length: np.ndarray
    ends_number: np.ndarray
    node_token: np.ndarray
    node_depth: np.ndarray
    node_sees: np.ndarray
    row_nodes: np.ndarray

    @property
    def depth(self) -> int:
        return self.rows.shape[1]


def number_paths(tokenizer, prompt: str, where: str) -> NumberPaths:
    """The token paths of the replies "0".."100" (and " 0".." 100") after `prompt`, a chat prompt
    ending in the generation prompt; SafedriftError naming `where` if some number cannot be written."""
    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    prompt_ids = encode(prompt)
    prompt_text = decode(prompt_ids)
    spellings: dict[tuple[int, ...], int] = {}  # token path -> value
    for value in SCALE.tolist():
        written = False
        for spelling in SPELLINGS:
            text = spelling.format(value)
            ids = encode(prompt + text)
            path = tuple(ids[len(prompt_ids):])
            # The reply must follow the prompt's own tokens (no token straddles the boundary) and
            # spell exactly the number: no unknown-token stand-in, no dropped characters.
            if ids[:len(prompt_ids)] != prompt_ids or not path or decode(ids) != prompt_text + text:
                continue
            written = True
            spellings.setdefault(path, value)  # a tokenizer that drops the space gives one path twice
        if not written:
            tokens = tokenizer.convert_ids_to_tokens(encode(prompt + str(value))[len(prompt_ids):])
            raise SafedriftError(f"{where}: its tokenizer cannot write the number {value} as a reply (it reads "
                                 f"{tokens}); it cannot be a rubric judge: use a chat model whose tokenizer has digits")
    paths = sorted(spellings)
    # A row for every path that is no proper prefix of another; sorted order puts a path's
    # extensions right after it, so a path is a row exactly when the next one does not extend it.
    rows = [p for i, p in enumerate(paths) if i + 1 == len(paths) or paths[i + 1][:len(p)] != p]
    row_of_prefix = {row[:k]: r for r, row in enumerate(rows) for k in range(1, len(row) + 1)}
    nodes = sorted(row_of_prefix)
    node_of = {node: i for i, node in enumerate(nodes)}
    depth = max(len(row) for row in rows)
    return NumberPaths(
        rows=np.array([list(row) + [0] * (depth - len(row)) for row in rows], dtype=np.int64),
        row_lengths=np.array([len(row) for row in rows], dtype=np.int64),
        spelling_value=np.array([spellings[p] for p in paths], dtype=np.int64),
        spelling_row=np.array([row_of_prefix[p] for p in paths], dtype=np.int64),
        spelling_length=np.array([len(p) for p in paths], dtype=np.int64),
        ends_number=ends_number(tokenizer, list(next(p for p in paths if spellings[p] == 1))),
        node_token=np.array([node[-1] for node in nodes], dtype=np.int64),
        node_depth=np.array([len(node) for node in nodes], dtype=np.int64),
        node_sees=np.array([[node[:len(other)] == other for other in nodes] for node in nodes]),
        row_nodes=np.array([[node_of[row[:j + 1]] if j < len(row) else 0 for j in range(depth)] for row in rows],
                           dtype=np.int64),
    )


def ends_number(tokenizer, one: list[int]) -> np.ndarray:
    """[V] True for each token t whose text, written after the number 1 (token path `one`), does
    not start with a digit. Decoded in context, so a SentencePiece "▁5" reads as " 5": it ends."""
    base = tokenizer.decode(one, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    texts = tokenizer.batch_decode([one + [t] for t in range(len(tokenizer))], skip_special_tokens=False,
                                   clean_up_tokenization_spaces=False)
    return np.array([not (text.startswith(base) and text[len(base):len(base) + 1] in DIGITS) for text in texts])


def number_probabilities(paths: NumberPaths, first: np.ndarray, step: np.ndarray, end: np.ndarray) -> np.ndarray:
    """[B, 101] probability that the reply is each number 0..100, from the trie rows' statistics.

    first: [B, R] P(row's first token | prompt); step: [B, R, D] P(row token j+1 | prompt, row
    tokens 0..j) (ignored past a row's end); end: [B, R, D] P(the next token ends a number |
    prompt, row tokens 0..j). A row may be left out with first = 0 (then its steps do not matter)."""
    first, step, end = (np.asarray(a, dtype=np.float64) for a in (first, step, end))
    # prefix[b, r, j] = P(prompt is followed by row tokens 0..j)
    within = np.arange(paths.depth - 1)[None, :] < (paths.row_lengths[:, None] - 1)
    steps = np.where(within[None], step[:, :, :-1], 1.0)
    prefix = first[:, :, None] * np.concatenate([np.ones_like(first)[:, :, None], np.cumprod(steps, axis=2)], axis=2)
    last = paths.spelling_length - 1
    spelling = prefix[:, paths.spelling_row, last] * end[:, paths.spelling_row, last]  # [B, C]
    out = np.zeros((len(first), len(SCALE)))
    np.add.at(out.T, paths.spelling_value, spelling.T)  # " 37" and "37" are both 37
    return out
