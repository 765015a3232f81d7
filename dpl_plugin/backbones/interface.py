"""What the prompting wing needs from a CLIP family, and the errors of loading one.

A family (openai ``clip``, OpenCLIP, ...) is bound to a loaded model by a :class:`Backbone`: its
:class:`~.towers.TextTower` and :class:`~.towers.VisionTower` (token embedding, positions, the
residual blocks as :class:`~.blocks.PromptableBlock`, pooling and projection), its tokenizer, and
the shapes in a :class:`~.spec.BackboneSpec`. The prompting wing uses nothing else of the model,
so a new family is one module that builds these parts from the family's own modules.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import List, Optional, Sequence

import torch
from torch import nn

from ..errors import DPLError
from .spec import BackboneSpec
from .towers import ImageTower, TextTower


class WeightsNotFoundError(DPLError, FileNotFoundError):
    """CLIP weights are neither on disk nor downloadable."""


class CorruptWeightsError(DPLError, RuntimeError):
    """A weights file exists but cannot be read as CLIP weights."""


class UnsupportedBackboneError(DPLError, ValueError):
    """A model uses a feature that prompts cannot (yet) enter; the message names the feature."""


class BPETokenizer:
    """CLIP's byte-pair tokenizer (openai ``clip`` and OpenCLIP ship the same one): ids without the
    start and end markers, which the caller places."""

    def __init__(self, simple_tokenizer, sot: int, eot: int):
        self._bpe = simple_tokenizer
        self.sot, self.eot = sot, eot
        self.vocab_size = len(simple_tokenizer.encoder)

    def encode(self, text: str) -> List[int]:
        return self._bpe.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self._bpe.decode(ids)


class Backbone(ABC):
    """One loaded CLIP model as its family exposes it to prompts."""

    family: str = ""

    def __init__(self, model: nn.Module):
        self.model = model

    @property
    @abstractmethod
    def tokenizer(self) -> BPETokenizer:
        """The tokenizer the model was trained with."""

    @property
    @abstractmethod
    def context_length(self) -> int:
        """Positions of the text encoder."""

    @property
    @abstractmethod
    def image_resolution(self) -> int:
        """Side of the square images the image encoder takes."""

    @abstractmethod
    def text_tower(self) -> TextTower:
        """The text encoder's parts."""

    @abstractmethod
    def image_tower(self) -> ImageTower:
        """The image encoder's parts (a :class:`~.towers.VisionTower` for a ViT)."""

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale

    def spec(self, name: str = "") -> BackboneSpec:
        text, image = self.text_tower(), self.image_tower()
        return BackboneSpec(
            name=name, text_layers=len(text.blocks), text_width=text.width, text_heads=text.blocks[0].num_heads,
            context_length=self.context_length, embed_dim=text.output_dim, vision_layers=len(image.blocks),
            vision_width=image.width if image.blocks else 0,
            vision_heads=image.blocks[0].num_heads if image.blocks else 0, image_resolution=self.image_resolution)

    @torch.no_grad()
    def word_embeddings(self, ids: Sequence[int]) -> torch.Tensor:
        """Input embeddings ``(len(ids), width)`` of token ids, in float32 (initial prompt values)."""
        embedding = self.text_tower().token_embedding
        return embedding(torch.as_tensor(list(ids), device=embedding.weight.device)).float()


def square(size, what: str) -> Optional[int]:
    """``size`` (an int or a pair) as one side; UnsupportedBackboneError for non-square images."""
    sides = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    if sides[0] != sides[1]:
        raise UnsupportedBackboneError(f"{what} takes non-square {sides[0]}x{sides[1]} images; only square "
                                       f"image encoders are supported")
    return int(sides[0])
