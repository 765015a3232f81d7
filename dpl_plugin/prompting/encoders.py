"""A CLIP's text and image encoders, run through :func:`run_prompted_blocks` with per-layer prompts.

The encoders hold the loaded model's own modules through its family's towers (no copies) and only
re-sequence what the model's ``encode_text`` and image encoder do, so that prompts can enter
between the steps. With no prompts they compute exactly what the model computes.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.registry import bind
from .insertion import LayerPrompt, replace_slots, run_prompted_blocks
from .text_inputs import TokenizedPrompts


def _layer0_tokens(prompts: Optional[Sequence[LayerPrompt]], insertion: str):
    """The layer-0 prompt that native insertion places in the input sequence (else None)."""
    return prompts[0] if (prompts is not None and insertion == "native") else None


class PromptedTextEncoder(nn.Module):
    """``checkpoint``: recompute each block's activations in the backward pass instead of keeping
    them (activation checkpointing), for many classes; the features and gradients do not change."""

    def __init__(self, clip_model, checkpoint: bool = False):
        super().__init__()
        self.checkpoint = checkpoint
        backbone = bind(clip_model)
        self.tower = backbone.text_tower()
        self.context_length = backbone.context_length

    @property
    def dtype(self) -> torch.dtype:
        return self.tower.dtype

    def forward(self, prompts: TokenizedPrompts, layer_prompts: Optional[Sequence[LayerPrompt]] = None,
                insertion: str = "prefix") -> torch.Tensor:
        """Features of every tokenized prompt (not normalised): ``(C * T, embed_dim)``, or
        ``(C, embed_dim)`` when the templates' embeddings are merged."""
        tower = self.tower
        tokens, eot = prompts.tokens, prompts.eot
        if tower.pooling == "last":  # every position up to the context's end counts: nothing is cut
            tokens = F.pad(tokens, (0, self.context_length - tokens.shape[1]))
        x = tower.embed(tokens)
        if prompts.merge == "embeddings" and prompts.num_templates > 1:
            x = x.view(prompts.num_classes, prompts.num_templates, *x.shape[1:]).mean(dim=1)
            eot = eot.view(prompts.num_classes, prompts.num_templates)[:, -1]
        n_slots = prompts.n_slots
        layer0 = _layer0_tokens(layer_prompts, insertion)
        got = 0 if layer0 is None else layer0.shape[-2]
        if got != n_slots:
            raise ValueError(f"the prompts were tokenized with {n_slots} input slots but layer 0 has {got} tokens")
        if layer0 is not None:
            x = replace_slots(x, 1, n_slots, layer0)
        x = tower.add_positions(x)
        x, n_final = run_prompted_blocks(
            tower.blocks, x, layer_prompts, insertion, head=1, n_slots=n_slots, causal=True,
            checkpoint=self.checkpoint,
        )
        return tower.pool(x, eot.to(x.device) + (n_final - n_slots))


class PromptedImageEncoder(nn.Module):
    def __init__(self, clip_model):
        super().__init__()
        self.tower = bind(clip_model).image_tower()
        self.is_vit = len(self.tower.blocks) > 0

    @property
    def dtype(self) -> torch.dtype:
        return self.tower.dtype

    def forward(self, images: torch.Tensor, layer_prompts: Optional[Sequence[LayerPrompt]] = None,
                insertion: str = "prefix") -> torch.Tensor:
        tower = self.tower
        if not self.is_vit:
            if layer_prompts is not None and any(p is not None for p in layer_prompts):
                raise ValueError("ResNet image encoders take no prompts; use a ViT backbone for vision prompts")
            return tower(images)
        x = tower.embed(images)
        head = x.shape[1]
        layer0 = _layer0_tokens(layer_prompts, insertion)
        n_slots = 0
        if layer0 is not None:  # after the positional embedding, before the pre-norm (VPT/MaPLe)
            x = replace_slots(x, head, 0, layer0)
            n_slots = layer0.shape[-2]
        x = tower.pre_norm(x)
        x, _ = run_prompted_blocks(tower.blocks, x, layer_prompts, insertion, head=head, n_slots=n_slots)
        return tower.pool(x, head)
