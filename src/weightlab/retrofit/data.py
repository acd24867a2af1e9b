"""The retrofit's data: documents of one source of the text corpus, tokenised into blocks."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from weightlab.errors import InputError
from weightlab.lm.text import documents_of


def token_blocks(tokenizer: Any, texts: Sequence[str], seq_len: int, max_blocks: int | None = None) -> torch.Tensor:
    """Documents tokenised, joined with the EOS token, cut into (n, seq_len) blocks."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text, add_special_tokens=False).input_ids + ([eos] if eos is not None else [])
        if max_blocks is not None and len(ids) >= max_blocks * seq_len:
            break
    n = len(ids) // seq_len if max_blocks is None else min(len(ids) // seq_len, max_blocks)
    if n == 0:
        raise InputError(f"{len(texts)} documents give {len(ids)} tokens, fewer than one block of {seq_len}.")
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len)


def validation_blocks(tokenizer: Any, corpus: Mapping[str, Any], source: str, seq_len: int, eval_sequences: int) -> torch.Tensor:
    """The first `eval_sequences` blocks of the validation documents of `source` (the same for every method)."""
    return token_blocks(tokenizer, documents_of(corpus, "validation", source), seq_len, eval_sequences)


def retrofit_data(
    tokenizer: Any, corpus: Mapping[str, Any], source: str, seq_len: int, eval_sequences: int, max_docs: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Training blocks from the first `max_docs` training documents of `source`, the validation
    blocks, and a description of both."""
    train_docs = documents_of(corpus, "train", source)[:max_docs]
    train = token_blocks(tokenizer, train_docs, seq_len)
    validation = validation_blocks(tokenizer, corpus, source, seq_len, eval_sequences)
    info = {
        "corpus": source, "train_documents": len(train_docs), "seq_len": seq_len,
        "train_blocks": len(train), "validation_blocks": len(validation), "validation_tokens": validation.numel(),
    }
    return train, validation, info
