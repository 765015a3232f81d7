"""openai ``clip`` as a family: its model's parts as the prompting wing's towers.

``clip.model.CLIP``: a causal text transformer pooled at the end-of-text token with a projection
matrix; a ViT pooled at the class token (post-norm, projection matrix) or a ModifiedResNet, which
takes no prompts. Blocks are ``ln_1``, packed ``nn.MultiheadAttention``, ``ln_2``, ``mlp``.
"""

from __future__ import annotations

from .blocks import PromptableBlock
from .clip_package import clip_api, clip_model_module
from .interface import Backbone, BPETokenizer
from .towers import ImageTower, TextTower, VisionTower

_BPE = clip_api._tokenizer
TOKENIZER = BPETokenizer(_BPE, _BPE.encoder["<|startoftext|>"], _BPE.encoder["<|endoftext|>"])


def owns(model) -> bool:
    return isinstance(model, clip_model_module.CLIP)


def block_view(block) -> PromptableBlock:
    return PromptableBlock(block.ln_1, block.attn, block.ln_2, block.mlp)


class OpenAIClip(Backbone):
    family = "openai clip"

    @property
    def tokenizer(self) -> BPETokenizer:
        return TOKENIZER

    @property
    def context_length(self) -> int:
        return self.model.context_length

    @property
    def image_resolution(self) -> int:
        return self.model.visual.input_resolution

    def text_tower(self) -> TextTower:
        m = self.model
        return TextTower(m.token_embedding, m.positional_embedding, m.transformer.resblocks, block_view, m.ln_final,
                         m.text_projection)

    def image_tower(self) -> ImageTower:
        visual = self.model.visual
        if not isinstance(visual, clip_model_module.VisionTransformer):
            return ImageTower(visual, visual.conv1.weight)
        return VisionTower(visual.conv1, visual.class_embedding, visual.positional_embedding, visual.ln_pre,
                           visual.transformer.resblocks, block_view, visual.ln_post, visual.proj)
