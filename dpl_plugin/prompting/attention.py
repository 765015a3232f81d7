"""Attention of a frozen CLIP layer with prompt tokens as extra keys and values.

All functions take the layer's own attention projections (a family's
:class:`~dpl_plugin.backbones.blocks.PackedAttention`, or an ``nn.MultiheadAttention``, whose packed
projections are used), so nothing of ``clip/model.py`` is re-implemented beyond the attention
arithmetic itself. Tensors are batch-first: ``h`` is ``(B, L, D)``, already passed through the
layer's ``ln_1``; prompt tokens are ``(n, D)`` (shared by the batch) or ``(B, n, D)`` and must
also be ``ln_1``-normalised by the caller (the paper attends to ``LN1([x; P])``).

* :func:`prefix_attention` -- one prompt (possibly empty): the train stage and the plain layer.
* :func:`mixture_attention` -- ``sum_c w_c * attention with candidate c's prefix`` in one pass:
  the real tokens go once through fused attention, which also gives their scores' log-sum-exp;
  each candidate adds only its ``L x c`` scores, combined by log-sum-exp weights (the
  DPL paper's mixture of prefixes). Nothing of size ``L x L`` is kept for backward.
* :func:`reference_mixture_attention` -- the same mixture, one full attention per candidate; kept
  as the ground truth for tests and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from ..backbones.blocks import as_projections


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


def _project_qkv(attn, h: torch.Tensor):
    return tuple(_heads(t, attn.num_heads) for t in attn.qkv(h))


def _project_kv(attn, tokens: torch.Tensor):
    return tuple(_heads(t, attn.num_heads) for t in attn.kv(tokens))


def _merge_heads(out: torch.Tensor, attn) -> torch.Tensor:
    batch, _, length, _ = out.shape
    out = out.transpose(1, 2).reshape(batch, length, attn.embed_dim)
    return attn.out(out)


def prefix_attention(
    attn,
    h: torch.Tensor,
    prompt: Optional[torch.Tensor] = None,
    attn_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``MHA(q = h, kv = [h; prompt])``; the mask (``L x L``, additive) never hides the prompt."""
    attn = as_projections(attn)
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


def _scores(q: torch.Tensor, k: torch.Tensor, mask: Optional[torch.Tensor], scale: float) -> torch.Tensor:
    """``(q * scale) k^T + mask`` in the dtype of ``q`` and ``k``, outside autocast: under ``amp``
    autocast would run the product in fp16 whatever its inputs' dtype, and an unscaled ``q.k`` above
    65504 overflows to inf (inf meeting a causal mask's -inf is NaN). Scaling ``q`` first keeps the
    product at the size of the scores themselves."""
    with torch.autocast(q.device.type, enabled=False):
        scores = (q * scale) @ k.transpose(-1, -2)
        return scores + mask if mask is not None else scores


def _fused_attention(q, k, v, mask, scale):
    """Output and log-sum-exp of the scores, ``(B, H, L, d)`` and ``(B, H, L)``, without autograd.

    On a CPU, PyTorch's fused kernel returns both; elsewhere the output comes from fused attention
    and the log-sum-exp from the scores, which exist only for the duration of this call.
    """
    if q.device.type == "cpu" and _CPU_FUSED is not None:
        return _CPU_FUSED(q, k, v, 0.0, False, attn_mask=mask, scale=scale)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    wide = torch.promote_types(q.dtype, torch.float32)  # fp16 scores would round the log-sum-exp
    return out, torch.logsumexp(_scores(q.to(wide), k.to(wide), mask, scale), dim=-1)


_CPU_FUSED = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_CPU_FUSED_BACKWARD = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)


class _AttentionWithLSE(torch.autograd.Function):
    """Attention ``softmax(S) V`` and ``logsumexp(S)``, both differentiable.

    Saves only what fused attention saves (q, k, v, output, log-sum-exp); the backward recomputes
    the probabilities ``P``. With upstream gradients ``dO`` and ``dlse`` the score gradient is
    ``dS = P * (dO V^T - rowsum(dO * O) + dlse)``: the softmax's term and the log-sum-exp's at once.
    """

    @staticmethod
    def forward(ctx, q, k, v, mask, scale):
        mask = mask.to(q.dtype) if mask is not None else None  # additive
        out, lse = _fused_attention(q, k, v, mask, scale)
        ctx.save_for_backward(q, k, v, out, lse, mask)
        ctx.scale = scale
        return out, lse

    @staticmethod
    def backward(ctx, d_out, d_lse):
        q, k, v, out, lse, mask = ctx.saved_tensors
        # With create_graph (an exact second-order hypergradient) the backward itself must be
        # differentiable: the plain computation is, the fused kernel is not. Half precision (CPU
        # autocast) takes the plain one too: it runs in fp32, where folding the log-sum-exp's
        # gradient into the output does not round it away.
        fused = (q.device.type == "cpu" and _CPU_FUSED_BACKWARD is not None and not torch.is_grad_enabled()
                 and q.dtype in (torch.float32, torch.float64))
        shifted = _fold_lse_gradient(out, d_out, d_lse) if fused else None
        if shifted is not None:
            grads = _CPU_FUSED_BACKWARD(d_out, q, k, v, shifted, lse, 0.0, False, attn_mask=mask, scale=ctx.scale)
        else:
            grads = _math_backward(q, k, v, out, lse, mask, ctx.scale, d_out, d_lse)
        return (*grads, None, None)


def _fold_lse_gradient(out, d_out, d_lse):
    """An output ``O'`` with ``rowsum(dO * O') = rowsum(dO * O) - dlse``, so that the fused kernel's
    backward (which reads ``O`` only through that row sum) also carries the log-sum-exp's gradient:
    ``O' = O - dlse * dO / |dO|^2``. None where a row has a log-sum-exp gradient but (almost) no
    output gradient to carry it."""
    norm = torch.linalg.vecdot(d_out, d_out)
    carried = norm > torch.finfo(norm.dtype).tiny ** 0.5
    if not bool((carried | (d_lse == 0)).all()):
        return None
    factor = torch.where(carried, d_lse / torch.where(carried, norm, 1.0), 0.0)
    return torch.addcmul(out, factor.unsqueeze(-1), d_out, value=-1)


def _math_backward(q, k, v, out, lse, mask, scale, d_out, d_lse):
    """The same gradients from the recomputed probabilities (any device; half precision in fp32;
    differentiable)."""
    dtypes = (q.dtype, k.dtype, v.dtype)
    wide = torch.promote_types(q.dtype, torch.float32)
    q, k, v, out, d_out = (t.to(wide) for t in (q, k, v, out, d_out))
    probs = torch.exp(_scores(q, k, None if mask is None else mask.to(wide), scale) - lse.to(wide).unsqueeze(-1))
    shift = (d_out * out).sum(dim=-1) - d_lse.to(wide)
    d_scores = (d_out @ v.transpose(-1, -2) - shift.unsqueeze(-1)) * probs
    d_q = (d_scores @ k) * scale
    d_k = (d_scores.transpose(-1, -2) @ q) * scale
    d_v = probs.transpose(-1, -2) @ d_out
    return d_q.to(dtypes[0]), d_k.to(dtypes[1]), d_v.to(dtypes[2])


def mixture_attention(
    attn,
    h: torch.Tensor,
    mixture: CandidateMixture,
    attn_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``sum_k w_k * prefix_attention(h, candidate_k)``, computed in a single pass.

    The real tokens go through fused attention once, which yields their output ``O_x`` and the
    log-sum-exp ``lse_x`` of their scores. Candidate ``k``'s attention is then a softmax over
    ``[lse_x, S_k]`` (its ``c`` prompt scores): the first weight rescales ``O_x``, the others weigh
    the prompt values. Nothing of size ``L x L`` is kept for backward; per query and head the
    mixture keeps ``K * (c_max + 1)`` weights on top of what fused attention keeps.
    """
    attn = as_projections(attn)
    q, k, v = _project_qkv(attn, h)  # (B, H, L, d), views of one projection
    batch, heads, length, dim = q.shape
    scale = dim ** -0.5
    out_x, lse_x = _AttentionWithLSE.apply(q, k, v, attn_mask, scale)

    kp, vp = _project_kv(attn, mixture.tokens.to(h.dtype))  # (K, H, c, d)
    count, _, c_max, _ = kp.shape
    # Laid out (H, K, c, B*L): per head over all queries (q is read in place, nothing new is kept
    # for it), and the softmax over each candidate's slots runs across rows, not within tiny ones.
    queries = q.transpose(0, 1).reshape(heads, batch * length, dim).transpose(1, 2)  # (H, d, B*L)
    keys = (kp * scale).permute(1, 0, 2, 3).reshape(heads, count * c_max, dim)
    padding = torch.arange(c_max, device=h.device) >= mixture.lengths.to(h.device)[:, None]  # (K, c)
    bias = torch.zeros(padding.shape, dtype=q.dtype, device=h.device).masked_fill_(padding, float("-inf"))
    prompt_scores = torch.baddbmm(bias.view(1, -1, 1), keys, queries).view(heads, count, c_max, batch * length)
    # softmax([lse_x, S_k]) = softmax([0, S_k - lse_x]): slot 0 is the real tokens' share.
    relative = prompt_scores - lse_x.transpose(0, 1).reshape(heads, 1, 1, batch * length)
    probs = torch.softmax(F.pad(relative, (0, 0, 1, 0)), dim=2)  # (H, K, 1 + c, B*L)

    weights = mixture.weights.to(probs.dtype)
    values = F.pad(vp.transpose(0, 1) * weights[:, None, None].to(vp.dtype), (0, 0, 1, 0))  # slot 0: O_x's
    out = torch.bmm(probs.view(heads, -1, batch * length).transpose(1, 2),
                    values.reshape(heads, -1, dim).to(probs.dtype))  # (H, B*L, d)
    real_weight = weights @ probs[:, :, 0]  # (H, B*L): sum_k w_k * candidate k's share of the real tokens
    out = out.view(heads, batch, length, dim) + real_weight.view(heads, batch, length, 1) * out_x.transpose(0, 1)
    # out_proj is affine and the weights sum to 1, so it is applied once to the mixture.
    return attn.out(out.permute(1, 2, 0, 3).reshape(batch, length, attn.embed_dim).to(h.dtype))


def reference_mixture_attention(
    attn,
    h: torch.Tensor,
    mixture: CandidateMixture,
    attn_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The mixture as written in the paper: one attention per candidate, weighted and summed."""
    attn, out = as_projections(attn), 0
    for k in range(len(mixture.lengths)):
        out = out + mixture.weights[k] * prefix_attention(attn, h, mixture.candidate(k), attn_mask)
    return out
