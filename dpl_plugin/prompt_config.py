"""The prompt configuration: how many prompt tokens each layer of each branch gets.

A :class:`PromptConfig` is the one object that the search writes and the train stage reads. It is
plain data (two lists of token counts, the insertion form, whether the branches are coupled) and
round-trips through a human-editable YAML file::

    insertion: prefix      # prefix: extra keys/values (DPL); native: real tokens (CoOp/VPT/IVLP/MaPLe)
    coupled: false         # true: vision prompts are mapped from text prompts (MaPLe)
    max_length: 6          # optional bound on every entry (the search's largest candidate)
    text: [2, 0, 4, 6, 0, 0, 1, 0, 0, 0, 0, 0]   # one entry per text layer, layer 0 = input
    vision: [6, 6, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional

import yaml

from .errors import DPLError
from .runtime.atomic import atomic_write

INSERTIONS = ("prefix", "native")
BRANCHES = ("text", "vision")
_KEYS = ("insertion", "coupled", "max_length", "text", "vision", "provenance")


class PromptConfigError(DPLError, ValueError):
    """A prompt configuration that cannot be used; the message says what to change."""


@dataclass
class PromptConfig:
    text: List[int]
    vision: List[int]
    insertion: str = "prefix"
    coupled: bool = False
    max_length: Optional[int] = None
    # Free-form record of where the configuration came from (search settings, per-layer
    # confidence). Carried through save/load untouched; never used to build a model.
    provenance: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        _check_types(self)
        self.text = [_as_count(v, "text", i) for i, v in enumerate(self.text)]
        self.vision = [_as_count(v, "vision", i) for i, v in enumerate(self.vision)]
        self.validate()

    # -- queries ---------------------------------------------------------------------------------
    def lengths(self, branch: str) -> List[int]:
        return {"text": self.text, "vision": self.vision}[branch]

    def uses(self, branch: str) -> bool:
        return any(self.lengths(branch))

    def input_length(self, branch: str) -> int:
        """Tokens placed in the input sequence (layer 0) under native insertion."""
        lengths = self.lengths(branch)
        return lengths[0] if lengths else 0

    # -- validation ------------------------------------------------------------------------------
    def validate(self, backbone=None) -> "PromptConfig":
        """Check internal consistency and, given a :class:`BackboneSpec`, the layer counts."""
        if self.insertion not in INSERTIONS:
            raise PromptConfigError(f"insertion must be one of {INSERTIONS}, got '{self.insertion}'")
        if self.max_length is not None:
            if not isinstance(self.max_length, int) or self.max_length < 0:
                raise PromptConfigError(f"max_length must be a non-negative integer, got {self.max_length!r}")
            for branch in BRANCHES:
                for layer, n in enumerate(self.lengths(branch)):
                    if n > self.max_length:
                        raise PromptConfigError(
                            f"{branch} layer {layer} asks for {n} tokens, above max_length "
                            f"{self.max_length}; lower it or raise max_length"
                        )
        if self.coupled:
            shared = min(len(self.text), len(self.vision))
            for layer in range(max(len(self.text), len(self.vision))):
                t = self.text[layer] if layer < len(self.text) else 0
                v = self.vision[layer] if layer < len(self.vision) else 0
                if (layer < shared and t != v) or (layer >= shared and (t or v)):
                    raise PromptConfigError(
                        f"coupled configuration needs equal text and vision lengths per layer "
                        f"(vision prompts are mapped from text prompts), but layer {layer} has "
                        f"text {t} and vision {v}"
                    )
        if backbone is not None:
            self._check_backbone(backbone)
        return self

    def _check_backbone(self, backbone) -> None:
        name = backbone.name or "this backbone"
        if not backbone.is_vit and self.uses("vision"):
            raise PromptConfigError(
                f"{name} has a ResNet image encoder: vision prompts need a ViT backbone "
                f"(ViT-B/32, ViT-B/16, ViT-L/14). Use a text-only design (CoOp) or a ViT."
            )
        for branch in BRANCHES:
            expected = backbone.layers(branch)
            got = len(self.lengths(branch))
            if branch == "vision" and not backbone.is_vit:
                continue
            if got != expected:
                raise PromptConfigError(
                    f"the configuration lists {got} {branch} layers but {name} has {expected}; "
                    f"give exactly one token count per {branch} layer (0 for no prompt)"
                )

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def zeros(cls, text_layers: int = 12, vision_layers: int = 12, **kwargs) -> "PromptConfig":
        return cls(text=[0] * text_layers, vision=[0] * vision_layers, **kwargs)

    @classmethod
    def coop(cls, n_ctx: int = 16, text_layers: int = 12, vision_layers: int = 12, insertion="native"):
        """CoOp: ``n_ctx`` learnable input tokens in the text branch, nothing deeper."""
        return cls(text=_deep(n_ctx, 1, text_layers), vision=[0] * vision_layers, insertion=insertion)

    @classmethod
    def vpt(cls, n_ctx: int = 8, depth: int = 12, text_layers: int = 12, vision_layers: int = 12,
            insertion="native"):
        """VPT-deep: ``n_ctx`` vision tokens in the first ``depth`` layers, text fixed."""
        return cls(text=[0] * text_layers, vision=_deep(n_ctx, depth, vision_layers), insertion=insertion)

    @classmethod
    def ivlp(cls, n_text: int = 2, n_vision: int = 2, depth_text: int = 12, depth_vision: int = 12,
             text_layers: int = 12, vision_layers: int = 12, insertion="native"):
        """IVLP: independent deep prompts in both branches."""
        return cls(text=_deep(n_text, depth_text, text_layers),
                   vision=_deep(n_vision, depth_vision, vision_layers), insertion=insertion)

    @classmethod
    def maple(cls, n_ctx: int = 2, depth: int = 9, text_layers: int = 12, vision_layers: int = 12,
              insertion="native"):
        """MaPLe: ``n_ctx`` tokens in the first ``depth`` layers, vision mapped from text."""
        return cls(text=_deep(n_ctx, depth, text_layers), vision=_deep(n_ctx, depth, vision_layers),
                   coupled=True, insertion=insertion)

    def with_insertion(self, insertion: str) -> "PromptConfig":
        return replace(self, insertion=insertion, provenance=dict(self.provenance))

    # -- YAML ------------------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"insertion": self.insertion, "coupled": self.coupled}
        if self.max_length is not None:
            out["max_length"] = self.max_length
        out["text"] = list(self.text)
        out["vision"] = list(self.vision)
        if self.provenance:
            out["provenance"] = self.provenance
        return out

    @classmethod
    def from_dict(cls, data: Dict[str, Any], source: str = "configuration") -> "PromptConfig":
        if not isinstance(data, dict):
            raise PromptConfigError(f"{source}: expected a mapping with keys {_KEYS}, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise PromptConfigError(f"{source}: unknown key(s) {unknown}; allowed keys are {list(_KEYS)}")
        missing = [k for k in BRANCHES if k not in data]
        if missing:
            raise PromptConfigError(f"{source}: missing {missing}; list one token count per layer for each branch")
        try:  # types are checked on construction (_check_types)
            return cls(**data)
        except PromptConfigError as err:
            raise PromptConfigError(f"{source}: {err}") from None

    def save(self, path: str) -> str:
        """Write the YAML file atomically: readers never see a half-written configuration."""
        text = _HEADER + yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=200)
        with atomic_write(path, "w") as f:
            f.write(text)
        return path

    @classmethod
    def load(cls, path: str, backbone=None) -> "PromptConfig":
        if not os.path.isfile(path):
            raise PromptConfigError(f"prompt configuration file not found: {path}")
        with open(path) as f:
            try:
                data = yaml.safe_load(f)
            except yaml.YAMLError as err:
                raise PromptConfigError(f"{path} is not valid YAML: {err}") from err
        config = cls.from_dict(data, source=path)
        if backbone is not None:
            try:
                config.validate(backbone)
            except PromptConfigError as err:
                raise PromptConfigError(f"{path}: {err}") from None
        return config


_HEADER = (
    "# dpl-plugin prompt configuration: prompt tokens per layer (layer 0 = input) and branch.\n"
    "# insertion: prefix = extra keys/values of each layer's attention (DPL);\n"
    "#            native = real sequence tokens replaced layer by layer (CoOp/VPT/IVLP/MaPLe).\n"
)


def _check_types(config: "PromptConfig") -> None:
    """Wrong types fail here with the key's name, not later as a silent coercion (``max_length:
    true`` is 1 to Python) or an error deep inside the model."""
    for branch in BRANCHES:
        value = getattr(config, branch)
        if not isinstance(value, (list, tuple)):
            raise PromptConfigError(f"'{branch}' must be a list of token counts, one per layer (e.g. [2, 0, 0]), "
                                    f"got {type(value).__name__} {value!r}")
    if not isinstance(config.insertion, str):
        raise PromptConfigError(f"'insertion' must be one of {list(INSERTIONS)}, got {config.insertion!r}")
    if not isinstance(config.coupled, bool):
        raise PromptConfigError(f"'coupled' must be true or false, got {config.coupled!r}")
    if config.max_length is not None and (isinstance(config.max_length, bool) or not isinstance(config.max_length, int)):
        raise PromptConfigError(f"'max_length' must be a whole number of tokens (or left out), got "
                                f"{type(config.max_length).__name__} {config.max_length!r}")
    if not isinstance(config.provenance, dict):
        raise PromptConfigError(f"'provenance' must be a mapping, got {type(config.provenance).__name__}")


def _as_count(value, branch: str, layer: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PromptConfigError(
            f"{branch} layer {layer}: token counts must be non-negative integers, got {value!r}"
        )
    return value


def _deep(n: int, depth: int, layers: int) -> List[int]:
    if not 0 <= depth <= layers:
        raise PromptConfigError(f"prompt depth {depth} must be between 0 and the layer count {layers}")
    return [n] * depth + [0] * (layers - depth)
