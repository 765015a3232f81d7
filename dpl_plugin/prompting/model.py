"""``PromptedCLIP``: a frozen CLIP classifier whose encoders take prompts from a learner.

The learner can be a :class:`~dpl_plugin.prompting.learners.PromptLearner` (fixed lengths, train stage and
baselines) or the search's supernet learner; the model does not care which.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.registry import bind
from ..errors import require_instance
from ..prompt_config import PromptConfig
from ..runtime import distributed
from .encoders import PromptedImageEncoder, PromptedTextEncoder
from .initialization import check_searched, context_embeddings, inherit_prompts, random_part, template_plan
from .learners import PromptLearner, PromptSet
from .text_inputs import TokenizedPrompts, build_prompts, plan_text_input


class Classification(NamedTuple):
    logits: torch.Tensor  # (B, C)
    image: torch.Tensor  # (B, embed_dim), normalised
    text: torch.Tensor  # (C, embed_dim), normalised


class PromptedCLIP(nn.Module):
    """``text_checkpoint``: recompute the text encoder's activations in backward instead of keeping
    them (for many classes). ``text_chunk``: without gradients (evaluation), encode the class texts
    this many classes at a time, so that memory does not grow with the number of classes (0: all)."""

    def __init__(self, clip_model, prompts: TokenizedPrompts, learner: nn.Module, text_checkpoint: bool = False,
                 text_chunk: int = 256):
        super().__init__()
        for param in clip_model.parameters():
            param.requires_grad_(False)
        family = bind(clip_model)
        self.backbone = family.spec()
        self._tokenizer = family.tokenizer  # the frozen features of hand-crafted prompts need it
        self.text_encoder = PromptedTextEncoder(clip_model, checkpoint=text_checkpoint)
        self.text_chunk = text_chunk
        self.image_encoder = PromptedImageEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.prompt_learner = learner
        if prompts.n_slots != learner.text_input_slots:
            raise ValueError(
                f"text prompts were tokenized with {prompts.n_slots} input slots, but the learner "
                f"places {learner.text_input_slots} input tokens"
            )
        self.prompts = prompts
        # Token ids follow the model across devices but are not learned: keep them out of checkpoints.
        self.register_buffer("text_tokens", prompts.tokens, persistent=False)
        self.register_buffer("text_eot", prompts.eot, persistent=False)
        self._text_cache: Optional[torch.Tensor] = None
        self._caching = False
        self._static_text: Optional[torch.Tensor] = None  # features of prompt-free text (e.g. VPT)

    # -- frozen parts stay in eval mode (ResNet BatchNorm statistics must not move) ----------------
    def train(self, mode: bool = True):
        super().train(mode)
        self.text_encoder.eval()
        self.image_encoder.eval()
        return self

    @property
    def num_classes(self) -> int:
        return self.prompts.num_classes

    def _tokenized(self, classes: Optional[range] = None) -> TokenizedPrompts:
        """The class prompts, or those of ``classes`` only (rows are class-major)."""
        p = self.prompts
        tokens, eot, count = self.text_tokens, self.text_eot, p.num_classes
        if classes is not None:
            rows = slice(classes.start * p.num_templates, classes.stop * p.num_templates)
            tokens, eot, count = tokens[rows], eot[rows], len(classes)
        return TokenizedPrompts(tokens, eot, p.n_slots, count, p.num_templates, p.overlay_text, p.merge)

    # -- features --------------------------------------------------------------------------------
    def encode_text(self, prompt_set: Optional[PromptSet] = None) -> torch.Tensor:
        """Normalised class text features ``(C, embed_dim)`` (template ensembles averaged)."""
        if self._text_cache is not None:
            return self._text_cache
        if prompt_set is None:
            prompt_set = self.prompt_learner()
        static = not prompt_set.any("text")  # nothing learnable reaches the text side
        cached = self._static_text
        if static and cached is not None and (cached.device, cached.dtype) == (self.text_tokens.device, self.text_encoder.dtype):
            return cached
        # With several processes each encodes its share of the classes; the gather keeps gradients.
        classes = distributed.shard(self.num_classes)
        feats = self._encode_classes(classes, prompt_set)
        feats = F.normalize(feats, dim=-1)
        if self.prompts.merge == "features" and self.prompts.num_templates > 1:  # CLIP's ensembling
            feats = F.normalize(feats.view(len(classes), self.prompts.num_templates, -1).mean(1), dim=-1)
        feats = distributed.gather_rows(feats, self.num_classes)
        if static:
            self._static_text = feats.detach()
        if self._caching:
            self._text_cache = feats
        return feats

    def _encode_classes(self, classes: range, prompt_set: PromptSet) -> torch.Tensor:
        """Text features of ``classes``; in chunks of ``text_chunk`` classes when no gradient is taken."""
        chunk = self.text_chunk if self.text_chunk > 0 and not torch.is_grad_enabled() else len(classes)
        insertion = self.prompt_learner.insertion
        parts = [self.text_encoder(self._tokenized(classes[i:i + chunk]), prompt_set.text, insertion)
                 for i in range(0, len(classes), chunk)]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def encode_image(self, images: torch.Tensor, prompt_set: Optional[PromptSet] = None) -> torch.Tensor:
        if prompt_set is None:
            prompt_set = self.prompt_learner()
        feats = self.image_encoder(images, prompt_set.vision, self.prompt_learner.insertion)
        return F.normalize(feats, dim=-1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C)``: scaled cosine similarity of image and class text features."""
        return self.classify(images).logits

    def classify(self, images: torch.Tensor) -> "Classification":
        """Logits with the normalised image and class text features they come from (training
        objectives that regularise the features need them)."""
        prompt_set = self.prompt_learner()
        image = self.encode_image(images, prompt_set)
        text = self.encode_text(prompt_set)
        return Classification(self.logit_scale.exp() * image @ text.t(), image, text)

    @torch.no_grad()
    def frozen_text_features(self, classnames: Sequence[str], template: str) -> torch.Tensor:
        """Unnormalised features of ``template`` filled with each class name, from the frozen text
        encoder without any prompt (hand-crafted prompt features): ``(C, embed_dim)``."""
        prompts = build_prompts(classnames, [template], context_length=self.backbone.context_length,
                                tokenizer=self._tokenizer)
        prompts.tokens, prompts.eot = prompts.tokens.to(self.text_tokens.device), prompts.eot.to(self.text_tokens.device)
        return self.text_encoder(prompts, None, "prefix").float()

    @torch.no_grad()
    def frozen_image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised features of ``images`` from the frozen image encoder without any prompt."""
        return F.normalize(self.image_encoder(images, None, "prefix").float(), dim=-1)

    @contextlib.contextmanager
    def cached_text_features(self):
        """Compute the class text features once for a whole evaluation (they do not depend on the
        images), instead of once per batch. Use only while the prompts do not change. They are
        computed on entry, so that every process takes part even if its share of the images is empty."""
        self._caching, self._text_cache = True, None
        try:
            with torch.no_grad():
                self.encode_text()
            yield self
        finally:
            self._caching, self._text_cache = False, None

    def learnable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]


def build_prompted_clip(
    clip_model,
    classnames: Sequence[str],
    config: PromptConfig,
    ctx_init: str = "",
    templates: Optional[Sequence[str]] = None,
    text_init: str = "normal:0.02",
    vision_init: str = "normal:0.02",
    truncate: bool = True,
    merge: str = "features",
    text_checkpoint: bool = False,
    supernet=None,
) -> PromptedCLIP:
    """A :class:`PromptedCLIP` with fixed-length prompts as ``config`` describes them.

    ``ctx_init`` (e.g. "a photo of a") gives the text input tokens their initial values under
    native insertion when it is long enough, as in CoOp and MaPLe; ``text_init="template"`` does
    so in either form, with "a photo of a" when ``ctx_init`` is empty; ``"searched"`` (both inits)
    starts every prompt from ``supernet``'s (a search's learner) candidates of the chosen lengths
    (:mod:`.initialization`). ``templates`` replaces the fixed text ("a photo of a {}."); several
    are merged per ``merge`` (see :class:`TokenizedPrompts`). ``text_checkpoint``: activation
    checkpointing in the text encoder (see :class:`PromptedCLIP`).
    """
    require_instance(config, PromptConfig, "build_prompted_clip's config",
                     "a dict d becomes one with PromptConfig.from_dict(d), a file with PromptConfig.load(path)")
    family = bind(clip_model)
    backbone = family.spec()  # PromptLearner validates config against it
    inherits = check_searched(text_init, vision_init, supernet)
    ctx_init, from_context = template_plan(text_init, ctx_init)
    templates, n_slots, mode = plan_text_input(config.insertion, config.input_length("text"), ctx_init, templates,
                                               family.tokenizer)
    prompts = build_prompts(classnames, templates, n_slots, mode, backbone.context_length, truncate, merge,
                            family.tokenizer)
    layer0 = None
    if mode == "overlay":
        layer0 = family.word_embeddings(prompts.tokens[0, 1: 1 + n_slots].tolist())
    elif from_context and config.text[0]:  # prefix form: the same words as keys and values
        layer0 = context_embeddings(clip_model, ctx_init, config.text[0])
    learner = PromptLearner(config, backbone, random_part(text_init), random_part(vision_init), layer0_text=layer0)
    learner.to(clip_model.logit_scale.device)
    model = PromptedCLIP(clip_model, prompts, learner, text_checkpoint=text_checkpoint)
    if inherits:
        inherit_prompts(model, supernet.to(clip_model.logit_scale.device))
    return model
