"""The shapes that prompts depend on, read off a loaded CLIP of any family."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackboneSpec:
    """Layer counts, widths and heads of both encoders; ``vision_layers`` is 0 for an image encoder
    that takes no prompts (ResNet)."""

    name: str
    text_layers: int
    text_width: int
    text_heads: int
    context_length: int
    embed_dim: int
    vision_layers: int  # 0 for ResNet backbones: they have no transformer to prompt
    vision_width: int
    vision_heads: int
    image_resolution: int

    @property
    def is_vit(self) -> bool:
        return self.vision_layers > 0

    def layers(self, branch: str) -> int:
        return {"text": self.text_layers, "vision": self.vision_layers}[branch]

    @classmethod
    def of(cls, model, name: str = "") -> "BackboneSpec":
        """The spec of a loaded model of any supported family."""
        from .registry import bind  # the families build specs: bound at call time

        return bind(model).spec(name)
