"""A frozen residual attention block as the insertion mechanism sees it.

Every CLIP family so far builds its transformers from pre-norm blocks
``x + s1(attn(norm1(x))); x + s2(mlp(norm2(x)))`` (``s1``, ``s2``: LayerScale, or nothing). A
prompt enters only the attention, as extra keys and values or as tokens of the sequence, so the
mechanism needs the block's pre-attention norm, its query/key/value and output projections, and
the rest of the block as one step: :class:`PromptableBlock` gives exactly that, from the block's
own modules.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class PackedAttention:
    """The projections of a ``nn.MultiheadAttention`` (queries, keys and values in one packed weight).

    Tensors are ``(..., n, D)``, unsplit into heads.
    """

    def __init__(self, attn: nn.MultiheadAttention):
        self.attn = attn

    @property
    def num_heads(self) -> int:
        return self.attn.num_heads

    @property
    def embed_dim(self) -> int:
        return self.attn.embed_dim

    @property
    def dtype(self) -> torch.dtype:
        return self.attn.in_proj_weight.dtype

    def qkv(self, h: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return F.linear(h, self.attn.in_proj_weight, self.attn.in_proj_bias).chunk(3, dim=-1)

    def kv(self, tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Keys and values only (prompt tokens are never queries)."""
        dim, bias = self.embed_dim, self.attn.in_proj_bias
        return F.linear(tokens, self.attn.in_proj_weight[dim:], bias[dim:] if bias is not None else None).chunk(2, dim=-1)

    def out(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn.out_proj(x)


def as_projections(attn):
    """``attn`` itself if it already exposes ``qkv``/``kv``/``out``, else its packed projections."""
    return attn if hasattr(attn, "qkv") else PackedAttention(attn)


class PromptableBlock:
    """``x + scale1(attention(norm(x)))``, then ``+ scale2(mlp(norm2(.)))``, from a block's modules.

    Not a module itself: it refers to the block's modules, which the tower that owns the blocks
    registers (so they follow the model across devices and dtypes).
    """

    def __init__(self, norm: nn.Module, attention, norm2: nn.Module, mlp: nn.Module,
                 scale1: Optional[Callable] = None, scale2: Optional[Callable] = None):
        self.norm = norm  # the pre-attention norm: prompts pass through it too
        self.attention = as_projections(attention)
        self.norm2, self.mlp = norm2, mlp
        self.scale1, self.scale2 = scale1, scale2

    @property
    def num_heads(self) -> int:
        return self.attention.num_heads

    @property
    def dtype(self) -> torch.dtype:
        return self.attention.dtype

    def finish(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """The residual sums and the MLP, given the attention output for ``x``."""
        x = x + (self.scale1(attended) if self.scale1 is not None else attended)
        out = self.mlp(self.norm2(x))
        return x + (self.scale2(out) if self.scale2 is not None else out)
