"""CLIP's text and image encoders, run through :func:`run_prompted_blocks` with per-layer prompts.

The encoders hold the installed ``clip`` model's own modules (no copies) and only re-sequence what
``CLIP.encode_text`` and ``VisionTransformer.forward`` do, so that prompts can enter between the
steps. With no prompts they compute exactly what CLIP computes.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from ..backbones.clip_package import clip_model_module
from .insertion import LayerPrompt, replace_slots, run_prompted_blocks
from .text_inputs import TokenizedPrompts


def _layer0_tokens(prompts: Optional[Sequence[LayerPrompt]], insertion: str):
    """The layer-0 prompt that native insertion places in the input sequence (else None)."""
    return prompts[0] if (prompts is not None and insertion == "native") else None


class PromptedTextEncoder(nn.Module):
    """``checkpoint``: recompute each block's activations in the backward pass instead of keeping
    them (activation checkpointing), for many classes; the features and gradients do not change."""

    def __init__(self, clip_model: "clip_model_module.CLIP", checkpoint: bool = False):
        super().__init__()
        self.checkpoint = checkpoint
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection

    @property
    def dtype(self) -> torch.dtype:
        return self.text_projection.dtype

    def forward(self, prompts: TokenizedPrompts, layer_prompts: Optional[Sequence[LayerPrompt]] = None,
                insertion: str = "prefix") -> torch.Tensor:
        """Features of every tokenized prompt (not normalised): ``(C * T, embed_dim)``, or
        ``(C, embed_dim)`` when the templates' embeddings are merged."""
        tokens, eot = prompts.tokens, prompts.eot
        x = self.token_embedding(tokens).type(self.dtype)
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
        x = x + self.positional_embedding[: x.shape[1]].type(self.dtype)
        x, n_final = run_prompted_blocks(
            self.transformer.resblocks, x, layer_prompts, insertion, head=1, n_slots=n_slots, causal=True,
            checkpoint=self.checkpoint,
        )
        x = self.ln_final(x).type(self.dtype)
        eot = eot.to(x.device) + (n_final - n_slots)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection


class PromptedImageEncoder(nn.Module):
    def __init__(self, clip_model: "clip_model_module.CLIP"):
        super().__init__()
        self.visual = clip_model.visual
        self.is_vit = isinstance(self.visual, clip_model_module.VisionTransformer)

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    def forward(self, images: torch.Tensor, layer_prompts: Optional[Sequence[LayerPrompt]] = None,
                insertion: str = "prefix") -> torch.Tensor:
        visual = self.visual
        images = images.type(self.dtype)
        if not self.is_vit:
            if layer_prompts is not None and any(p is not None for p in layer_prompts):
                raise ValueError("ResNet image encoders take no prompts; use a ViT backbone for vision prompts")
            return visual(images)
        x = visual.conv1(images)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        head = x.shape[1]
        layer0 = _layer0_tokens(layer_prompts, insertion)
        n_slots = 0
        if layer0 is not None:  # after the positional embedding, before ln_pre (VPT/MaPLe)
            x = replace_slots(x, head, 0, layer0)
            n_slots = layer0.shape[-2]
        x = visual.ln_pre(x)
        x, _ = run_prompted_blocks(
            visual.transformer.resblocks, x, layer_prompts, insertion, head=head, n_slots=n_slots
        )
        x = visual.ln_post(x[:, 0, :])
        return x @ visual.proj if visual.proj is not None else x

