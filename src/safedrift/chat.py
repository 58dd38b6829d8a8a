"""The toy world's chat format, shared by the corpus generator and the tokenizer.

`<|role|>` opens a turn and `<|end|>` closes it (it is also the EOS token). Content
is preceded by one space so that a word is the same token at the start of a turn as
inside a sentence. The Jinja template marks assistant content with
`{% generation %}` so `return_assistant_tokens_mask` (and TRL's
`assistant_only_loss`) find the completion tokens.
"""

from __future__ import annotations

SPECIAL_TOKENS = ["<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
PAD, EOS = "<|pad|>", "<|end|>"

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|assistant|>' }}{% generation %}{{ ' ' + message['content'] + '<|end|>' }}{% endgeneration %}"
    "{% else %}"
    "{{ '<|' + message['role'] + '|> ' + message['content'] + '<|end|>' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def render(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The string CHAT_TEMPLATE produces, without Jinja (used to write the pretraining corpus)."""
    out = []
    for m in messages:
        if m["role"] == "assistant":
            out.append(f"<|assistant|> {m['content']}{EOS}")
        else:
            out.append(f"<|{m['role']}|> {m['content']}{EOS}")
    if add_generation_prompt:
        out.append("<|assistant|>")
    return "".join(out)
