"""OpenCLIP (``open_clip_torch``) as a family: its ViT CLIPs' parts as the prompting wing's towers.

OpenCLIP's ``ResidualAttentionBlock`` is openai's plus LayerScale (``ls_1``, ``ls_2``; identity
when off) with batch-first attention; its text tower pools at the end-of-text token (``argmax``,
``eos``) or the last position (``last``) and projects with a matrix, a ``Linear`` or nothing; its
ViT pools the class token (``tok``) or the mean of the patch tokens (``avg``), with the post-norm
before or after pooling (``final_ln_after_pool``). ModifiedResNet image encoders take no prompts,
as openai's. Anything else is refused by :func:`unsupported`, naming the feature.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from open_clip import transformer as oc
from open_clip.modified_resnet import ModifiedResNet
from open_clip.tokenizer import SimpleTokenizer
from torch import nn

from .blocks import PromptableBlock
from .interface import Backbone, BPETokenizer, UnsupportedBackboneError, square
from .towers import ImageTower, TextTower, VisionTower

TEXT_POOLING = {"argmax": "eot", "eos": "eot", "last": "last"}  # OpenCLIP's name -> the tower's
VISION_POOLING = ("tok", "avg")
TOKENIZER_ATTRIBUTE = "dpl_tokenizer"  # where the loader leaves open_clip.get_tokenizer(name)'s result


def text_parts(model):
    """The module that holds the text tower's parts: the CLIP itself, or its ``text`` (CustomTextCLIP)."""
    return model.text if hasattr(model, "text") else model


def text_pool(parts) -> Tuple[str, Optional[int]]:
    """OpenCLIP's text pooling and its ``eos`` id (named differently on CLIP and TextTransformer)."""
    if isinstance(parts, oc.TextTransformer):
        return parts.pool_type, parts.eos_id
    return parts.text_pool_type, getattr(parts, "text_eos_id", None)


def block_view(block) -> PromptableBlock:
    return PromptableBlock(block.ln_1, block.attn, block.ln_2, block.mlp, block.ls_1, block.ls_2)


def _custom_block_features(block) -> List[str]:
    attn = block.attn
    present = (("q/k-norm (qk_norm)", not isinstance(attn.ln_q, nn.Identity)),
               ("scaled cosine attention (scaled_cosine_attn)", attn.logit_scale is not None),
               ("per-head scaling (scale_heads)", attn.head_scale is not None),
               ("an inner attention norm (scale_attn_inner)", not isinstance(attn.ln_inner, nn.Identity)),
               ("a norm after attention (scale_attn)", not isinstance(block.ln_attn, nn.Identity)),
               ("a norm inside the MLP (scale_fc)", not isinstance(block.mlp.ln, nn.Identity)))
    return [name for name, on in present if on] or ["block_type custom"]


def _block_problems(blocks, tower: str) -> List[str]:
    block = blocks[0]
    if isinstance(block, oc.CustomResidualAttentionBlock):
        return [f"custom attention blocks in the {tower} encoder ({', '.join(_custom_block_features(block))})"]
    if not isinstance(block, oc.ResidualAttentionBlock):
        return [f"{type(block).__name__} blocks in the {tower} encoder"]
    if hasattr(block, "ln_1_kv"):
        return [f"cross-attention blocks in the {tower} encoder"]
    return []


def _text_problems(model, tokenizer) -> List[str]:
    parts = text_parts(model)
    if not hasattr(parts, "token_embedding"):
        return [f"a {type(parts).__name__} text encoder (a Hugging Face text tower, hf_model_name)"]
    problems = _block_problems(parts.transformer.resblocks, "text")
    pool, eos_id = text_pool(parts)
    if pool not in TEXT_POOLING:
        problems.append(f"text pooling '{pool}' (supported: {', '.join(TEXT_POOLING)})")
    if pool == "eos" and eos_id != tokenizer.eot:
        problems.append(f"text pooling at token id {eos_id}, which is not the tokenizer's end of text")
    if parts.attn_mask is None:
        problems.append("bidirectional text attention (no_causal_mask)")
    if getattr(parts, "cls_emb", None) is not None:
        problems.append("a text class token (embed_cls, as in CoCa)")
    if parts.vocab_size != tokenizer.vocab_size:
        problems.append(f"a vocabulary of {parts.vocab_size} tokens, not the BPE tokenizer's {tokenizer.vocab_size}")
    return problems


def _vision_problems(visual) -> List[str]:
    if isinstance(visual, ModifiedResNet):
        return []
    if not isinstance(visual, oc.VisionTransformer):
        return [f"a {type(visual).__name__} image encoder (timm_model_name)"]
    problems = _block_problems(visual.transformer.resblocks, "vision")
    if visual.attn_pool is not None:
        problems.append("attention pooling in the image encoder (attentional_pool)")
    elif visual.pool_type not in VISION_POOLING:
        problems.append(f"image pooling '{visual.pool_type}' (supported: {', '.join(VISION_POOLING)})")
    return problems


def unsupported(model, tokenizer) -> List[str]:
    """What of ``model`` (and its tokenizer) prompts cannot enter, one phrase per feature."""
    if not hasattr(model, "visual") or type(model).__name__ == "CoCa":
        return [f"{type(model).__name__} models (only CLIP and CustomTextCLIP)"]
    if not isinstance(tokenizer, BPETokenizer):
        return [f"a {type(tokenizer).__name__} tokenizer (hf_tokenizer_name; only CLIP's BPE tokenizer is supported)"]
    return _text_problems(model, tokenizer) + _vision_problems(model.visual)


class OpenCLIP(Backbone):
    family = "OpenCLIP"

    def __init__(self, model):
        super().__init__(model)
        given = getattr(model, TOKENIZER_ATTRIBUTE, None)
        if given is None:  # a model built in code: open_clip.get_tokenizer's choice for a config without one
            given = SimpleTokenizer(context_length=text_parts(model).context_length)
        self._tokenizer = (BPETokenizer(given, given.sot_token_id, given.eot_token_id)
                           if isinstance(given, SimpleTokenizer) else given)
        problems = unsupported(model, self._tokenizer)
        if problems:
            raise UnsupportedBackboneError(
                f"this OpenCLIP model uses {'; '.join(problems)}, which prompts cannot enter yet. Supported: ViT "
                f"CLIPs (LayerScale on or off; text pooling argmax/eos/last; image pooling tok/avg, "
                f"final_ln_after_pool) and ModifiedResNet image encoders (text prompts only), with CLIP's BPE "
                f"tokenizer")

    @property
    def tokenizer(self) -> BPETokenizer:
        return self._tokenizer

    @property
    def context_length(self) -> int:
        return text_parts(self.model).context_length

    @property
    def image_resolution(self) -> int:
        return square(self.model.visual.image_size, "this OpenCLIP model")

    def text_tower(self) -> TextTower:
        t = text_parts(self.model)
        return TextTower(t.token_embedding, t.positional_embedding, t.transformer.resblocks, block_view, t.ln_final,
                         t.text_projection, pooling=TEXT_POOLING[text_pool(t)[0]])

    def image_tower(self) -> ImageTower:
        v = self.model.visual
        if isinstance(v, ModifiedResNet):
            return ImageTower(v, v.conv1.weight)
        return VisionTower(v.conv1, v.class_embedding, v.positional_embedding, v.ln_pre, v.transformer.resblocks,
                           block_view, v.ln_post, v.proj, pooling=v.pool_type, norm_after_pool=v.final_ln_after_pool,
                           token_dropout=v.patch_dropout)
