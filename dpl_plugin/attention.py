"""Attention of a frozen CLIP layer with prompt tokens as extra keys and values.

All functions take the layer's own ``nn.MultiheadAttention`` and use its packed input projection
and output projection, so nothing of ``clip/model.py`` is re-implemented beyond the attention
arithmetic itself. Tensors are batch-first: ``h`` is ``(B, L, D)``, already passed through the
layer's ``ln_1``; prompt tokens are ``(n, D)`` (shared by the batch) or ``(B, n, D)`` and must
also be ``ln_1``-normalised by the caller (the paper attends to ``LN1([x; P])``).

* :func:`prefix_attention` -- one prompt (possibly empty): the train stage and the plain layer.
* :func:`mixture_attention` -- ``sum_c w_c * attention with candidate c's prefix`` in one pass:
  the projections of ``x``, the ``L x L`` scores and their weighted values are computed once;
  each candidate adds only its ``L x c`` scores (METHOD.md section 3).
* :func:`reference_mixture_attention` -- the same mixture, one full attention per candidate; kept
  as the ground truth for tests and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class CandidateMixture:
    """Candidate prompts of one layer and their mixing weights (the search's relaxation).

    ``tokens``: ``(K, c_max, D)``, candidate ``k`` in rows ``[:lengths[k]]``, zero-padded after.
    ``lengths``: ``(K,)`` integer lengths (0 = the plain layer). ``weights``: ``(K,)``, sum 1.
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    weights: torch.Tensor

    def map_tokens(self, fn) -> "CandidateMixture":
        return CandidateMixture(fn(self.tokens), self.lengths, self.weights)

    def candidate(self, k: int) -> torch.Tensor:
        return self.tokens[k, : int(self.lengths[k])]


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(..., n, D) -> (..., H, n, D/H)``."""
    *lead, n, dim = x.shape
    return x.reshape(*lead, n, num_heads, dim // num_heads).transpose(-3, -2)


def _project_qkv(attn: nn.MultiheadAttention, h: torch.Tensor):
    q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    return _heads(q, attn.num_heads), _heads(k, attn.num_heads), _heads(v, attn.num_heads)


def _project_kv(attn: nn.MultiheadAttention, tokens: torch.Tensor):
    dim = attn.embed_dim
    bias = attn.in_proj_bias[dim:] if attn.in_proj_bias is not None else None
    k, v = F.linear(tokens, attn.in_proj_weight[dim:], bias).chunk(2, dim=-1)
    return _heads(k, attn.num_heads), _heads(v, attn.num_heads)


def _merge_heads(out: torch.Tensor, attn: nn.MultiheadAttention) -> torch.Tensor:
    batch, _, length, _ = out.shape
    out = out.transpose(1, 2).reshape(batch, length, attn.embed_dim)
    return attn.out_proj(out)


def prefix_attention(
    attn: nn.MultiheadAttention,
    h: torch.Tensor,
    prompt: Optional[torch.Tensor] = None,
    attn_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``MHA(q = h, kv = [h; prompt])``; the mask (``L x L``, additive) never hides the prompt."""
    q, k, v = _project_qkv(attn, h)
    if prompt is not None and prompt.shape[-2] > 0:
        kp, vp = _project_kv(attn, prompt.to(h.dtype))
        if kp.dim() == 3:  # shared by the batch
            kp, vp = kp.expand(q.shape[0], -1, -1, -1), vp.expand(q.shape[0], -1, -1, -1)
        k, v = torch.cat([k, kp], dim=2), torch.cat([v, vp], dim=2)
        if attn_mask is not None:
            attn_mask = F.pad(attn_mask, (0, kp.shape[-2]))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    return _merge_heads(out, attn)


def mixture_attention(
    attn: nn.MultiheadAttention,
    h: torch.Tensor,
    mixture: CandidateMixture,
    attn_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``sum_k w_k * prefix_attention(h, candidate_k)``, computed in a single pass.

    Each candidate's softmax shares the numerator ``exp(S_x - m) V_x`` and the denominator term
    ``sum exp(S_x - m)`` of the real tokens; it only adds its own prompt terms. A per-candidate
    shift ``m_k = max(m_x, max S_k)`` keeps every exponent <= 0, as a fused softmax would.
    """
    q, k, v = _project_qkv(attn, h)  # (B, H, L, d)
    q = q * (q.shape[-1] ** -0.5)
    scores = q @ k.transpose(-1, -2)  # (B, H, L, L)
    if attn_mask is not None:
        scores = scores + attn_mask
    m_x = scores.amax(dim=-1, keepdim=True).detach()
    e_x = torch.exp(scores - m_x)
    num_x = e_x @ v  # (B, H, L, d)
    z_x = e_x.sum(dim=-1)  # (B, H, L)

    kp, vp = _project_kv(attn, mixture.tokens.to(h.dtype))  # (K, H, c, d)
    kp, vp = kp.transpose(0, 1), vp.transpose(0, 1)  # (H, K, c, d)
    s_p = torch.einsum("bhld,hkcd->bhlkc", q, kp)
    padding = torch.arange(kp.shape[-2], device=h.device) >= mixture.lengths.to(h.device)[:, None]
    s_p = s_p.masked_fill(padding, float("-inf"))  # (B, H, L, K, c)
    m_k = torch.maximum(m_x, s_p.amax(dim=-1).detach())  # (B, H, L, K); finite since m_x is
    e_p = torch.exp(s_p - m_k.unsqueeze(-1))
    shift = torch.exp(m_x - m_k)  # rescales the shared terms to candidate k's shift
    weight = mixture.weights.to(h.dtype) / (shift * z_x.unsqueeze(-1) + e_p.sum(dim=-1))
    out = num_x * (weight * shift).sum(dim=-1, keepdim=True)
    out = out + torch.einsum("bhlkc,hkcd->bhld", e_p * weight.unsqueeze(-1), vp)
    # out_proj is affine and the weights sum to 1, so it is applied once to the mixture.
    return _merge_heads(out, attn)


def reference_mixture_attention(
    attn: nn.MultiheadAttention,
    h: torch.Tensor,
    mixture: CandidateMixture,
    attn_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The mixture as written in the paper: one attention per candidate, weighted and summed."""
    out = 0
    for k in range(len(mixture.lengths)):
        out = out + mixture.weights[k] * prefix_attention(attn, h, mixture.candidate(k), attn_mask)
    return out
