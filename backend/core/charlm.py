"""`charlm`: a small decoder-only transformer over bytes (the spec's `input_dim` is its context
length, `num_classes` its vocabulary of 256 byte values).

A row of a data file is `context` bytes of text as float32 0..255 (x) and the byte that follows
(y), so every `.npz` file, validation chunk and check stays `(rows, features)`. The model predicts
the next byte at every position: the targets of row x are x[1:] followed by y.

Written with plain matmuls, an explicit causal mask and softmax (no dropout, no fused attention
kernel): the same weights give the same logits on every machine and in float32 or float64, and
every layer is one Opacus knows (Embedding, Linear, LayerNorm).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from backend.core.errors import DataError

VOCAB = 256  # byte values


def tokens_of(x: torch.Tensor) -> torch.Tensor:
    """Float byte values (rows, context) as token ids; one clear error for anything else."""
    if x.numel() and not bool(((x >= 0) & (x < VOCAB) & (x == torch.round(x))).all()):
        raise DataError(
            f"the charlm model reads bytes: features must be integers 0..{VOCAB - 1} "
            "(one byte of text per column)"
        )
    return x.long()


def next_byte_targets(tokens: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each position's target: the following byte (x[1:] then y), shape (rows, context)."""
    return torch.cat([tokens[:, 1:], y.reshape(-1, 1).to(tokens.dtype)], dim=1)


class _CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n, t, w = h.shape
        q, k, v = self.qkv(h).split(w, dim=2)
        q, k, v = (z.reshape(n, t, self.heads, w // self.heads).transpose(1, 2) for z in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(w // self.heads)
        future = torch.triu(torch.ones(t, t, dtype=torch.bool, device=h.device), diagonal=1)
        attn = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(n, t, w))


class _Block(nn.Module):
    """Pre-LayerNorm: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = _CausalSelfAttention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(self.ln1(h))
        return h + self.mlp(self.ln2(h))


class CharLM(nn.Module):
    """Token + learned position embeddings, `depth` blocks, final LayerNorm, linear head."""

    def __init__(self, context: int, width: int, depth: int, heads: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(_Block(width, heads) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, VOCAB)
        self._init_weights()

    def _init_weights(self) -> None:
        # GPT-2's scale: PyTorch's N(0, 1) embeddings would start the model far from uniform.
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (rows, context, 256) of the next byte at every position of x."""
        tokens = tokens_of(x)
        if tokens.ndim != 2 or tokens.shape[1] != self.pos.num_embeddings:
            raise DataError(
                f"the charlm model reads rows of {self.pos.num_embeddings} bytes; "
                f"got shape {tuple(x.shape)}"
            )
        # positions per row, (rows, context): Opacus's per-sample gradients need the batch
        # dimension first on every layer's input, or one row's clipping would not bound it
        positions = torch.arange(tokens.shape[1], device=tokens.device).expand(tokens.shape[0], -1)
        h = self.tok(tokens) + self.pos(positions)
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_f(h))
