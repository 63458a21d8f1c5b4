"""Tiny models and data built from configs, shared by the integration tests (no downloads)."""

from __future__ import annotations

import torch

VOCAB = 64
SEQ = 8


class TokenDataset(torch.utils.data.Dataset):
    """Random token sequences for causal language modelling (labels = inputs)."""

    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, VOCAB, (n, SEQ), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=SEQ, n_embd=16, n_layer=1, n_head=2)
    return GPT2LMHeadModel(cfg)
