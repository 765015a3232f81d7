"""A design's search space as data: which layers the search sets, and the lengths it chooses from.

The NAS sanity check compares a searched configuration with configurations drawn *uniformly from
the same space*; :class:`SearchSpace` states that space the way the supernet builds it (the
design's branches, every layer of each, one shared choice per layer when coupled) and samples it.
Samples are prefix-insertion configurations, like :func:`~dpl_plugin.search.derive_config`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Tuple

import torch

from ..backbones.spec import BackboneSpec
from ..designs import Design, get_design
from ..prompt_config import PromptConfig
from .supernet import COUPLED, DEFAULT_CANDIDATES, normalise_candidates


@dataclass(frozen=True)
class SearchSpace:
    branches: Tuple[str, ...]
    coupled: bool
    text_layers: int
    vision_layers: int
    candidates: Tuple[int, ...]

    def __post_init__(self):
        if self.coupled and set(self.branches) != {"text", "vision"}:
            raise ValueError("a coupled search space needs both branches")
        object.__setattr__(self, "candidates", tuple(normalise_candidates(self.candidates)))

    @classmethod
    def of(cls, design, backbone: BackboneSpec, candidates: Iterable[int] = DEFAULT_CANDIDATES) -> "SearchSpace":
        """The space the supernet of ``design`` (a name or :class:`Design`) searches on ``backbone``."""
        design = design if isinstance(design, Design) else get_design(design)
        if "vision" in design.branches and not backbone.is_vit:
            raise ValueError(f"{backbone.name or 'this backbone'} has a ResNet image encoder: "
                             f"design '{design.name}' prompts the vision branch and needs a ViT")
        return cls(tuple(design.branches), design.coupled, backbone.text_layers, backbone.vision_layers,
                   tuple(candidates))

    # -- shape -------------------------------------------------------------------------------------
    def searched_layers(self) -> Dict[str, int]:
        """Independent choices per logit table: ``{"coupled": n}`` or ``{branch: n}`` (the alpha tables)."""
        counts = {"text": self.text_layers, "vision": self.vision_layers}
        if self.coupled:
            return {COUPLED: min(counts.values())}
        return {b: counts[b] for b in self.branches}

    @property
    def size(self) -> int:
        """Number of distinct configurations: ``|C| ** (independent layer choices)``."""
        return len(self.candidates) ** sum(self.searched_layers().values())

    # -- configurations ----------------------------------------------------------------------------
    def config(self, choices: Dict[str, List[int]], provenance=None) -> PromptConfig:
        """The configuration with ``choices[table][layer]`` tokens (tables as in :meth:`searched_layers`)."""
        lengths = {"text": [0] * self.text_layers, "vision": [0] * self.vision_layers}
        for table, values in choices.items():
            for branch in (self.branches if table == COUPLED else (table,)):
                lengths[branch][:len(values)] = [int(v) for v in values]
        return PromptConfig(text=lengths["text"], vision=lengths["vision"], insertion="prefix",
                            coupled=self.coupled, max_length=max(self.candidates), provenance=dict(provenance or {}))

    def sample(self, generator: torch.Generator) -> PromptConfig:
        """One configuration, every searched layer's length independently uniform over the candidates."""
        values = torch.tensor(self.candidates)
        choices = {table: values[torch.randint(len(values), (n,), generator=generator)].tolist()
                   for table, n in self.searched_layers().items()}
        return self.config(choices, {"source": "uniform sample", "candidates": list(self.candidates)})

    def all_max(self) -> PromptConfig:
        """The largest configuration: the longest candidate in every searched layer."""
        top = max(self.candidates)
        return self.config({table: [top] * n for table, n in self.searched_layers().items()},
                           {"source": "all maximum", "candidates": list(self.candidates)})

    def contains(self, config: PromptConfig) -> bool:
        """Whether ``config``'s lengths are a point of this space (insertion form aside)."""
        searched = {"text": 0, "vision": 0}
        for table, n in self.searched_layers().items():
            for branch in (self.branches if table == COUPLED else (table,)):
                searched[branch] = n
        for branch, layers in (("text", self.text_layers), ("vision", self.vision_layers)):
            lengths, n = config.lengths(branch), searched[branch]
            if len(lengths) != layers or any(v not in self.candidates for v in lengths[:n]) or any(lengths[n:]):
                return False
        return config.coupled == self.coupled


__all__ = ["SearchSpace"]
