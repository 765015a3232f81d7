"""The one prompt-insertion mechanism: running CLIP's own residual blocks with per-layer prompts.

``run_prompted_blocks`` walks a CLIP family's residual blocks (each seen through a
:class:`~dpl_plugin.backbones.blocks.PromptableBlock`) and, for each layer, applies that layer's
prompt in one of two forms:

* ``prefix`` (the DPL paper's form): the prompt is extra keys/values of the layer's attention,
  never a query and never carried to the next layer; a :class:`CandidateMixture` (search stage)
  mixes several such prefixes in one pass.
* ``native`` (CoOp/VPT/IVLP/MaPLe, as their repositories do): prompt tokens are real tokens occupying
  ``n`` slots after the first ``head`` tokens; a layer with a prompt drops the current slot tokens
  and inserts its own (the number may change), a layer without lets them pass through. Layer 0's
  tokens are placed by the encoder (they go in before CLIP's input embeddings are finished).

Every block is computed from the block's own modules (pre-attention norm, attention projections,
the rest of the block), so the frozen weights are used exactly as the family uses them; the
sequence is batch-first, ``(B, L, D)``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from ..backbones.blocks import PromptableBlock
from .attention import CandidateMixture, mixture_attention, prefix_attention

LayerPrompt = Union[None, torch.Tensor, CandidateMixture]


def causal_mask(length: int, like: torch.Tensor) -> torch.Tensor:
    """CLIP's text mask: position ``i`` sees positions ``<= i`` (additive, ``-inf`` above)."""
    return torch.full((length, length), float("-inf"), dtype=like.dtype, device=like.device).triu_(1)


def prompted_block(block: PromptableBlock, x: torch.Tensor, attn_mask=None, prefix: LayerPrompt = None):
    """One residual attention block with an optional prefix prompt (tensor or mixture)."""
    h = block.norm(x)
    if isinstance(prefix, CandidateMixture):
        attended = mixture_attention(block.attention, h, prefix.map_tokens(lambda t: block.norm(t.to(x.dtype))),
                                     attn_mask)
    else:
        prompt = block.norm(prefix.to(x.dtype)) if prefix is not None else None
        attended = prefix_attention(block.attention, h, prompt, attn_mask)
    return block.finish(x, attended)


def replace_slots(x: torch.Tensor, head: int, n_current: int, prompt: torch.Tensor) -> torch.Tensor:
    """Swap the ``n_current`` tokens after position ``head`` for ``prompt`` (``(n, D)`` or ``(B, n, D)``)."""
    prompt = prompt.to(x.dtype)
    if prompt.dim() == 2:
        prompt = prompt.unsqueeze(0).expand(x.shape[0], -1, -1)
    return torch.cat([x[:, :head], prompt, x[:, head + n_current:]], dim=1)


def run_prompted_blocks(
    blocks: Sequence[PromptableBlock],
    x: torch.Tensor,
    prompts: Optional[Sequence[LayerPrompt]],
    insertion: str,
    head: int,
    n_slots: int = 0,
    causal: bool = False,
    checkpoint: bool = False,
) -> Tuple[torch.Tensor, int]:
    """Run ``blocks`` over ``x`` with ``prompts[l]`` at layer ``l``.

    ``head``/``n_slots``: under native insertion, the slot tokens sit at ``[head, head + n_slots)``.
    ``checkpoint``: keep only each block's input for backward and recompute the block's activations
    then (less memory, one more forward of the blocks); no effect when no gradient is taken.
    Returns the output and the final number of slot tokens (the text EOT index shifts by it).
    """
    if prompts is not None and len(prompts) != len(blocks):
        raise ValueError(f"got prompts for {len(prompts)} layers, but the encoder has {len(blocks)}")
    mask = None
    for layer, block in enumerate(blocks):
        prompt = prompts[layer] if prompts is not None else None
        if insertion == "native":
            if isinstance(prompt, CandidateMixture):
                raise ValueError("the length search mixes prefix prompts; use insertion='prefix' to search")
            if prompt is not None and layer > 0:
                x = replace_slots(x, head, n_slots, prompt)
                n_slots = prompt.shape[-2]
            prompt = None
        elif insertion != "prefix":
            raise ValueError(f"unknown insertion form '{insertion}'; use 'prefix' or 'native'")
        if causal and (mask is None or mask.shape[0] != x.shape[1]):
            mask = causal_mask(x.shape[1], x)
        if checkpoint and torch.is_grad_enabled():
            x = activation_checkpoint(prompted_block, block, x, mask, prompt, use_reentrant=False)
        else:
            x = prompted_block(block, x, mask, prefix=prompt)
    return x, n_slots
