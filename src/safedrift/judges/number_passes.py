"""The forward passes behind number_paths.number_probabilities, after a batched prompt pass.

tree_pass: the trie's nodes (about 200 tokens for any tokenizer) follow each prompt as one
continuation in which every node sees the prompt and its own prefixes only (a 4D attention
mask, as in tree-based speculative decoding): one pass per batch, appended to the prompt's
cache, so the cost is that of ~200 more prompt tokens. It needs an attention that takes a custom
additive mask (sdpa, eager) and a cache of plain full-attention layers (no sliding window or
recurrent state, whose masks and lengths a custom mask would not match).

row_pass: otherwise, each trie row (a path that no other extends, 1-4 tokens) is its own
sequence on a copy of its prompt's cache, in batches, leaving out rows behind the least likely
first tokens; a cache that cannot be copied that way gets the prompt again, in full.
"""

from __future__ import annotations

import copy

import torch

from safedrift.judges.number_paths import NumberPaths

# row_pass follows no path behind the least likely first tokens that together hold at most this
# fraction of the paths' first-token mass (their numbers count as 0): that moves at most 1e-4 of
# number mass, so a score by at most 100 * 1e-4 / min_number_mass points (0.04 at the default
# 0.25), and never leaves a prompt with no number at all.
NEGLIGIBLE_MASS = 1e-4
# row_pass sequences per pass, per prompt of the batch: each carries a copy of its prompt's cache.
CONTINUATIONS_PER_PROMPT = 4
TREE_ATTENTION = ("sdpa", "eager")


def trie_statistics(model, paths: NumberPaths, prompts, first_token, cache):
    """first [B, R], step [B, R, D], end [B, R, D] (number_probabilities' inputs) and the number
    of continuation sequences run, for the left-padded `prompts` (input_ids, attention_mask
    [B, P]) whose next-token distributions are first_token [B, V] and whose cache is `cache`."""
    device = first_token.device
    rows = torch.as_tensor(paths.rows, device=device)
    vocab = min(first_token.shape[-1], len(paths.ends_number))
    ends = torch.ones(first_token.shape[-1], device=device)  # embedding rows past the tokenizer: no digits
    ends[:vocab] = torch.as_tensor(paths.ends_number[:vocab], device=device).float()
    if tree_fits(model, cache):
        step, end = tree_pass(model, paths, prompts, cache, ends)
        first = first_token[:, rows[:, 0]]
        count = len(first)
    else:
        first = first_token[:, rows[:, 0]] * followed(first_token, rows[:, 0])
        step, end = row_pass(model, paths, prompts, cache, ends, first)
        count = int((first > 0).sum())
    return first.cpu().numpy(), step.cpu().numpy(), end.cpu().numpy(), count


def tree_fits(model, cache) -> bool:
    from transformers.cache_utils import DynamicLayer

    plain_layers = all(type(layer) is DynamicLayer for layer in getattr(cache, "layers", [None]))
    return plain_layers and getattr(model.config, "_attn_implementation", None) in TREE_ATTENTION


def tree_pass(model, paths: NumberPaths, prompts, cache, ends):
    """step, end [B, R, D] from one pass over the trie's nodes after each prompt."""
    mask_2d = prompts["attention_mask"]
    device, (batch, nodes) = mask_2d.device, (len(mask_2d), len(paths.node_token))
    tokens = torch.as_tensor(paths.node_token, device=device).expand(batch, nodes)
    positions = mask_2d.sum(-1, keepdim=True) + torch.as_tensor(paths.node_depth - 1, device=device)[None]
    sees = torch.cat([mask_2d.bool()[:, None, :].expand(-1, nodes, -1),
                      torch.as_tensor(paths.node_sees, device=device).expand(batch, -1, -1)], dim=2)
    dtype = next(model.parameters()).dtype
    mask = torch.zeros(sees.shape, dtype=dtype, device=device).masked_fill(~sees, torch.finfo(dtype).min)
    logits = model(input_ids=tokens, attention_mask=mask[:, None], position_ids=positions,
                   past_key_values=cache).logits  # [B, N, V]: the next token after each node
    row_nodes = torch.as_tensor(paths.row_nodes, device=device)
    rows = torch.as_tensor(paths.rows, device=device)
    step = torch.zeros((batch, *paths.rows.shape), device=device)
    end = torch.zeros_like(step)
    for b in range(batch):  # one prompt's [N, V] probabilities at a time
        probs = torch.softmax(logits[b].float(), dim=-1)
        end[b] = (probs @ ends)[row_nodes]
        step[b, :, :-1] = probs[row_nodes[:, :-1], rows[:, 1:]]
    return step, end


def followed(first_token, first_ids):
    """[B, R] 1.0 where row r's first token (first_ids [R]) is followed for prompt b, 0.0 where it
    is among the least likely first tokens that together hold at most NEGLIGIBLE_MASS of their mass."""
    distinct, row_of = torch.unique(first_ids, return_inverse=True)
    p, order = first_token[:, distinct].sort(dim=1)
    negligible = p.cumsum(1) <= NEGLIGIBLE_MASS * p.sum(1, keepdim=True)
    dropped = torch.zeros_like(negligible).scatter(1, order, negligible)
    return (~dropped[:, row_of]).float()


def row_pass(model, paths: NumberPaths, prompts, cache, ends, first):
    """step, end [B, R, D] from one sequence per (prompt, row) where first > 0, on cache copies."""
    prompt_mask, device = prompts["attention_mask"], first.device
    rows = torch.as_tensor(paths.rows, device=device)
    lengths = torch.as_tensor(paths.row_lengths, device=device)
    step = torch.zeros((*first.shape, paths.depth), device=device)
    end = torch.zeros_like(step)
    prompt_index, row_index = torch.nonzero(first, as_tuple=True)
    depth = torch.arange(paths.depth, device=device)
    chunk = CONTINUATIONS_PER_PROMPT * len(first)
    for start in range(0, len(row_index), chunk):
        b, r = prompt_index[start:start + chunk], row_index[start:start + chunk]
        tokens = rows[r]  # [n, D]
        mask = torch.cat([prompt_mask[b], (depth[None, :] < lengths[r, None]).long()], dim=1)
        positions = prompt_mask[b].sum(-1, keepdim=True) + depth[None, :]
        past = cache_rows(cache, b)
        if past is None:  # a cache this cannot copy (recurrent layers): the prompts again, in full
            tokens = torch.cat([prompts["input_ids"][b], tokens], dim=1)
            positions = torch.cat([(prompt_mask[b].cumsum(-1) - 1).clamp(min=0), positions], dim=1)
        logits = model(input_ids=tokens, attention_mask=mask, position_ids=positions,
                       past_key_values=past).logits[:, -paths.depth:].float()
        probs = torch.softmax(logits, dim=-1)  # [n, D, V]: the next token after row tokens 0..j
        end[b, r] = probs @ ends
        step[b, r, :-1] = probs[:, :-1].gather(-1, rows[r, 1:, None])[..., 0]
    return step, end


def cache_rows(cache, index):
    """`cache` (a transformers Cache) holding the prompts `index` (repeats allowed), without
    touching `cache`: its layers are copied shallowly, so the selection rebinds the copies'
    tensors, and the continuation pass appends to the copies. None for a cache whose layers keep
    other state (recurrent, quantised, static) that a shallow copy would share."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    if not all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in getattr(cache, "layers", [None])):
        return None
    view = copy.copy(cache)
    view.layers = [copy.copy(layer) for layer in cache.layers]
    view.batch_select_indices(index)
    return view
