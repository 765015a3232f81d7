"""Training objectives: what a step minimises, apart from which prompts exist and how they are scheduled.

A prompt-learning method is a design (:mod:`dpl_plugin.designs`: where prompts go), an objective
(this module: the loss of a batch) and a schedule (:mod:`dpl_plugin.engine.averaging`: what
happens to the prompts across epochs). The train loop, the search loop and the Dassl trainers all
take an :class:`Objective`; cross-entropy is the default one.

* :class:`CrossEntropy`: CoOp, VPT, IVLP, MaPLe and DPL.
* :class:`KgCoOp` (Yao et al., CVPR 2023, htyao89/KgCoOp ``trainers/kgcoop.py``): cross-entropy
  plus ``weight * (1 - mean_c cos(t_c, h_c))``, ``t_c`` the learned class text features and
  ``h_c`` the frozen CLIP's features of the hand-crafted prompt of class ``c``.
* :class:`PromptSRC` (Khattak et al., ICCV 2023, muzairkhattak/PromptSRC ``trainers/promptsrc.py``):
  cross-entropy plus ``text_weight * L1(t, f)`` (``f``: the frozen features of the 60 ImageNet
  templates, averaged unnormalised, then normalised), ``image_weight * L1(v, z)`` (``z``: the frozen
  image features) and ``KL(softmax(zero-shot logits) || softmax(logits))`` summed and divided by
  the number of logits; L1 is the mean absolute difference of the normalised features.

An objective is prepared once for a model's class names (:meth:`Objective.prepare`), then called
on batches; the frozen features it compares with are computed at the first call (an evaluation
never pays for them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, NamedTuple, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..errors import DPLError
from ..prompting.templates import DATASET_TEMPLATES, IMAGENET_TEMPLATES
from ..prompting.text_inputs import DEFAULT_TEMPLATE

# KgCoOp's hand-crafted prompts: CoOp's per-dataset prompts, but a sentence for textures.
KGCOOP_TEMPLATES = {**DATASET_TEMPLATES, "DescribableTextures": "a photo of a {}, a type of texture."}


class ObjectiveError(DPLError, ValueError):
    """An objective used before it was prepared, or with settings it cannot take."""


class ObjectiveOutput(NamedTuple):
    loss: torch.Tensor  # what is minimised
    logits: torch.Tensor  # (B, C), for accuracy
    terms: Dict[str, torch.Tensor]  # the loss's named parts (detached), for logs and tests


@dataclass
class Objective:
    """Cross-entropy of the prompted model's logits; subclasses add terms."""

    name = "cross_entropy"

    def prepare(self, model, classnames: Sequence[str]) -> "Objective":
        """Compute what the objective compares with (frozen features) for ``model``; returns self."""
        return self

    def __call__(self, model, images: torch.Tensor, labels: torch.Tensor) -> ObjectiveOutput:
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        return ObjectiveOutput(loss, logits, {"ce": loss.detach()})

    def describe(self) -> dict:
        """The objective's name and settings: what changes the prompts it trains (part of a search's
        definition and of a run's provenance)."""
        return {"name": self.name, **asdict(self)}


CrossEntropy = Objective


class _FrozenFeatures:
    """Features of the frozen CLIP for the prepared class names, computed once on first use."""

    def __init__(self, name: str, compute):
        self.name, self.compute = name, compute
        self.classnames, self.value = None, None

    def prepare(self, classnames: Sequence[str]) -> None:
        self.classnames, self.value = list(classnames), None

    def get(self, model, device) -> torch.Tensor:
        if self.classnames is None:
            raise ObjectiveError(f"the {self.name} objective was not prepared: call "
                                 f"objective.prepare(model, classnames) once the model is built")
        if self.value is None:
            self.value = self.compute(model, self.classnames)
        return self.value.to(device)


@dataclass
class KgCoOp(Objective):
    """``weight``: 8.0 in KgCoOp's scripts (``TRAINER.COOP.W``)."""

    name = "kgcoop"
    weight: float = 8.0
    template: str = DEFAULT_TEMPLATE  # the hand-crafted prompt, e.g. kgcoop_template(dataset name)

    def __post_init__(self):
        self._hand = _FrozenFeatures(self.name, lambda model, names: F.normalize(
            model.frozen_text_features(names, self.template), dim=-1))

    def prepare(self, model, classnames):
        self._hand.prepare(classnames)
        return self

    def __call__(self, model, images, labels):
        out = model.classify(images)
        ce = F.cross_entropy(out.logits, labels)
        hand = self._hand.get(model, out.text.device)
        drift = knowledge_guidance(out.text.float(), hand)
        return ObjectiveOutput(ce + self.weight * drift, out.logits, {"ce": ce.detach(), "kg": drift.detach()})


def knowledge_guidance(text: torch.Tensor, hand: torch.Tensor) -> torch.Tensor:
    """``1 - mean_c cos(text_c, hand_c)`` (KgCoOp's regulariser)."""
    return 1.0 - F.cosine_similarity(text, hand, dim=-1, eps=1e-7).mean()


def kgcoop_template(dataset_name: str) -> str:
    """KgCoOp's hand-crafted prompt for a Dassl dataset; "a photo of a {}." for any other dataset."""
    return KGCOOP_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


@dataclass
class PromptSRC(Objective):
    """Weights from PromptSRC's configs (``TEXT_LOSS_WEIGHT``, ``IMAGE_LOSS_WEIGHT``); the logit term
    has weight 1 and temperature 1 there."""

    name = "promptsrc"
    text_weight: float = 25.0
    image_weight: float = 10.0
    templates: Tuple[str, ...] = field(default=IMAGENET_TEMPLATES)

    def __post_init__(self):
        self.templates = tuple(self.templates)
        if not self.templates:
            raise ObjectiveError("PromptSRC needs at least one template for its frozen text features")
        self._text = _FrozenFeatures(self.name, self._ensemble)

    def _ensemble(self, model, classnames):
        total = sum(model.frozen_text_features(classnames, t) for t in self.templates)
        return F.normalize(total / len(self.templates), dim=-1)

    def prepare(self, model, classnames):
        self._text.prepare(classnames)
        return self

    def __call__(self, model, images, labels):
        out = model.classify(images)
        frozen_text = self._text.get(model, out.text.device)
        frozen_image = model.frozen_image_features(images)
        with torch.no_grad():
            zero_shot = model.logit_scale.exp().float() * frozen_image @ frozen_text.t()
        ce = F.cross_entropy(out.logits, labels)
        text = F.l1_loss(out.text.float(), frozen_text)
        image = F.l1_loss(out.image.float(), frozen_image)
        kl = logit_consistency(out.logits.float(), zero_shot)
        loss = ce + self.text_weight * text + self.image_weight * image + kl
        terms = {"ce": ce, "text_l1": text, "image_l1": image, "kl": kl}
        return ObjectiveOutput(loss, out.logits, {k: v.detach() for k, v in terms.items()})

    def describe(self) -> dict:
        return {"name": self.name, "text_weight": self.text_weight, "image_weight": self.image_weight,
                "templates": len(self.templates)}


def logit_consistency(logits: torch.Tensor, zero_shot: torch.Tensor) -> torch.Tensor:
    """``sum KL(softmax(zero_shot) || softmax(logits)) / logits.numel()`` (PromptSRC's L_SCL-logits)."""
    target = F.log_softmax(zero_shot, dim=-1)
    return (target.exp() * (target - F.log_softmax(logits, dim=-1))).sum() / logits.numel()


OBJECTIVES = {"cross_entropy": Objective, "kgcoop": KgCoOp, "promptsrc": PromptSRC}

__all__ = ["CrossEntropy", "KGCOOP_TEMPLATES", "KgCoOp", "OBJECTIVES", "Objective", "ObjectiveError",
           "ObjectiveOutput", "PromptSRC", "kgcoop_template", "knowledge_guidance", "logit_consistency"]
