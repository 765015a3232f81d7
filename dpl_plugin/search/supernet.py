"""The search's supernet: candidate prompts for every length, mixed by architecture logits.

For every searched layer ``l`` of a branch and every candidate length ``c`` in ``C`` there is a
prompt ``P[l, c]`` of ``c`` tokens (stored packed, one tensor per layer), and one logit
``alpha[l, c]``. The learner emits, per layer, a :class:`CandidateMixture` whose weights are
``softmax(alpha[l])``; the prefix attention mixes the candidates in one pass.

With ``nested`` candidates (``TRAINER.DPL.SEARCH.NESTED``) a layer's candidates share their tokens
instead: ``P[l, c]`` is the first ``c`` tokens of one ``max(C)``-token prompt (weight sharing as in
slimmable and once-for-all networks), so a token the train stage inherits learned in every step that
used a candidate at least that long, not only in the steps of its own candidate.

``alpha`` lives in its own module (:class:`ArchitectureLogits`): it is in the state dict, moves
with ``.to()``, and is kept apart from the prompt parameters, which the prompt optimizer gets.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Sequence

import torch
from torch import nn

from ..backbones.registry import bind
from ..backbones.spec import BackboneSpec
from ..prompting.attention import CandidateMixture
from ..prompting.initialization import init_tensor
from ..prompting.learners import PromptSet, coupling_map
from ..prompting.model import PromptedCLIP
from ..prompting.templates import DEFAULT_TEMPLATE
from ..prompting.text_inputs import build_prompts

DEFAULT_CANDIDATES = tuple(range(7))  # DPL's candidate prompt lengths: 0 to 6 tokens per layer
# The official DPL code's candidate initialisations: U[0, 1) text prompts, N(0, 1) vision prompts.
CANDIDATE_TEXT_INIT, CANDIDATE_VISION_INIT = "uniform", "normal:1"
COUPLED = "coupled"  # key of the single logit table shared by both branches (MaPLe-style)
# Added to the seed in force when alpha is built, to seed its Gumbel noise: a stream apart from the
# one the same seed gives torch's own generator (which drew the initial prompts and alpha).
GUMBEL_SEED_OFFSET = 0x9E3779B97F4A7C15


def normalise_candidates(candidates: Iterable[int]) -> List[int]:
    values = sorted(set(int(c) for c in candidates))
    if len(values) < 2 or values[0] != 0:
        raise ValueError(f"candidate lengths must be non-negative, include 0 (no prompt) and at least one "
                         f"positive length, got {list(candidates)}")
    return values


class ArchitectureLogits(nn.Module):
    """``alpha``: one ``(layers, |C|)`` table per searched branch, or one shared table if coupled."""

    def __init__(self, layers: Dict[str, int], num_candidates: int, coupled: bool = False, init_std: float = 1e-3):
        super().__init__()
        self.coupled = coupled
        self.branches = tuple(layers)
        tables = {COUPLED: min(layers.values())} if coupled else dict(layers)
        self.tables = nn.ParameterDict({
            key: nn.Parameter(init_std * torch.randn(n, num_candidates)) for key, n in tables.items()
        })
        # How the mixture weights are drawn; set by the search loop each epoch, never learned.
        self.temperature = 1.0
        self.gumbel = False
        self.single_path = False
        # Gumbel noise comes from a generator of its own, seeded from the seed in force now, which is
        # the same on every process (their initial prompts and alpha must be equal): every process
        # then mixes with the same sample, however differently each is seeded afterwards (their own
        # augmentations), and one logit matrix never combines class features of several mixtures.
        # Seeding it draws nothing from torch's generator. Its state belongs in a search checkpoint.
        self.noise = torch.Generator().manual_seed((torch.initial_seed() + GUMBEL_SEED_OFFSET) % 2 ** 64)

    def logits(self, branch: str) -> torch.Tensor:
        return self.tables[self.key(branch)]

    def probabilities(self, branch: str) -> torch.Tensor:
        """Deterministic ``softmax(alpha / T)``: what costs and budgets are computed from."""
        return torch.softmax(self.logits(branch) / self.temperature, dim=-1)

    def key(self, branch: str) -> str:
        return COUPLED if self.coupled else branch

    def mixture_weights(self) -> Dict[str, torch.Tensor]:
        """Per table, the weights the supernet mixes candidates with: ``softmax(alpha / T)``; in
        training with ``gumbel`` one relaxed sample ``softmax((alpha + G) / T)`` (GDAS/SNAS), with
        ``single_path`` one candidate per layer drawn uniformly, one-hot (SPOS; random search with
        weight sharing). A sample is shared by the branches of a coupled table."""
        if self.single_path and self.training:
            return {k: self._uniform_path(t) for k, t in self.tables.items()}
        if self.gumbel and self.training:
            return {k: self._gumbel_sample(t) for k, t in self.tables.items()}
        return {k: torch.softmax(t / self.temperature, dim=-1) for k, t in self.tables.items()}

    def _uniform_path(self, logits: torch.Tensor) -> torch.Tensor:
        """One-hot weights of one uniformly drawn candidate per layer (from :attr:`noise`): the
        step trains that configuration alone, as the stand-alone model would run it."""
        layers, count = logits.shape
        drawn = torch.randint(count, (layers,), generator=self.noise)
        return torch.nn.functional.one_hot(drawn, count).to(logits.device, logits.dtype)

    def _gumbel_sample(self, logits: torch.Tensor) -> torch.Tensor:
        """``F.gumbel_softmax(logits, tau=T)``'s computation with the noise from :attr:`noise` (drawn
        on the CPU, where the generator lives; ``F.gumbel_softmax`` draws from torch's generator)."""
        gumbels = -torch.empty(logits.shape).exponential_(generator=self.noise).log()
        return torch.softmax((logits + gumbels.to(logits.device, logits.dtype)) / self.temperature, dim=-1)

    def expected_tokens(self, lengths: torch.Tensor, branches_per_table: Dict[str, int]) -> torch.Tensor:
        """``E[tokens] = sum over tables, layers of sum_c p_c * c`` (a coupled table counts once per
        branch it prompts): the differentiable token cost (ProxylessNAS's expected latency)."""
        total = lengths.new_zeros((), dtype=torch.float32)
        for key, logits in self.tables.items():
            probs = torch.softmax(logits / self.temperature, dim=-1)
            total = total + branches_per_table[key] * (probs * lengths.to(probs.dtype)).sum()
        return total

    def tables_by_name(self) -> Dict[str, torch.Tensor]:
        """Detached probability tables keyed as they are learned ("coupled" or a branch name)."""
        return {key: torch.softmax(t.detach(), dim=-1).cpu() for key, t in self.tables.items()}


class SupernetPromptLearner(nn.Module):
    """Candidate prompts for ``branches`` over all their layers (prefix insertion only).

    Initialisation follows the official code: text prompts uniform in [0, 1), vision prompts
    standard normal. ``coupled``: vision candidates are ``Linear_l(text candidates)``. ``nested``:
    candidate ``c`` is the first ``c`` rows of one ``max(C)``-row prompt per layer (the official
    code has a prompt per candidate: ``sum(C)`` rows).
    """

    insertion = "prefix"
    text_input_slots = 0

    def __init__(self, backbone: BackboneSpec, branches: Sequence[str], candidates: Iterable[int] = DEFAULT_CANDIDATES,
                 coupled: bool = False, text_init: str = CANDIDATE_TEXT_INIT, vision_init: str = CANDIDATE_VISION_INIT,
                 alpha_init_std: float = 1e-3, nested: bool = False):
        super().__init__()
        self.candidates = normalise_candidates(candidates)
        self.nested = bool(nested)
        if "vision" in branches and not backbone.is_vit:
            raise ValueError(f"{backbone.name or 'this backbone'} has a ResNet image encoder: search the text branch only")
        if coupled and set(branches) != {"text", "vision"}:
            raise ValueError("a coupled search needs both branches")
        self.branches = tuple(branches)
        self.coupled = coupled
        self.layer_counts = {"text": backbone.text_layers, "vision": backbone.vision_layers}
        searched = {b: self.layer_counts[b] for b in self.branches}
        if coupled:
            searched = {b: min(searched.values()) for b in self.branches}
        self.searched_layers = searched
        total = max(self.candidates) if self.nested else sum(self.candidates)  # rows of a layer's prompt
        self.text = nn.ParameterDict()
        self.vision = nn.ParameterDict()
        self.maps = nn.ModuleDict()
        if "text" in self.branches and total:
            for layer in range(searched["text"]):
                self.text[str(layer)] = nn.Parameter(init_tensor((total, backbone.text_width), text_init))
        if "vision" in self.branches and total:
            for layer in range(searched["vision"]):
                if coupled:
                    self.maps[str(layer)] = coupling_map(backbone.text_width, backbone.vision_width)
                else:
                    self.vision[str(layer)] = nn.Parameter(init_tensor((total, backbone.vision_width), vision_init))
        self.alpha = ArchitectureLogits(searched, len(self.candidates), coupled, alpha_init_std)
        # Row indices that lay the packed candidates out as (K, c_max); index `total` is a zero row.
        c_max = max(self.candidates)
        index = torch.full((len(self.candidates), max(c_max, 1)), total, dtype=torch.long)
        start = 0
        for k, c in enumerate(self.candidates):
            first = 0 if self.nested else start
            index[k, :c] = torch.arange(first, first + c)
            start += c
        self.register_buffer("pad_index", index, persistent=False)
        self.register_buffer("lengths", torch.tensor(self.candidates), persistent=False)

    # -- parameter groups: never give alpha to the prompt optimizer --------------------------------
    def arch_parameters(self) -> List[nn.Parameter]:
        return list(self.alpha.parameters())

    def prompt_parameters(self) -> List[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    # -- forward -----------------------------------------------------------------------------------
    def _packed(self, branch: str, layer: int) -> torch.Tensor:
        """All candidates of a layer, concatenated: ``(sum(C), width)``."""
        if branch == "vision" and self.coupled:
            return self.maps[str(layer)](self.text[str(layer)])
        return getattr(self, branch)[str(layer)]

    def _mixture(self, packed: torch.Tensor, weights: torch.Tensor) -> CandidateMixture:
        padded = torch.cat([packed, packed.new_zeros(1, packed.shape[-1])])[self.pad_index]
        return CandidateMixture(padded, self.lengths, weights)

    def forward(self) -> PromptSet:
        out = {"text": [None] * self.layer_counts["text"], "vision": [None] * self.layer_counts["vision"]}
        if not sum(self.candidates):
            return PromptSet(out["text"], out["vision"])
        tables = self.alpha.mixture_weights()
        for branch in self.branches:
            weights = tables[self.alpha.key(branch)]
            for layer in range(self.searched_layers[branch]):
                out[branch][layer] = self._mixture(self._packed(branch, layer), weights[layer])
        return PromptSet(out["text"], out["vision"])

    def expected_tokens(self) -> torch.Tensor:
        """Expected prompt tokens of the configuration under the current mixture (all branches)."""
        per_table = {COUPLED: len(self.branches)} if self.coupled else {b: 1 for b in self.branches}
        return self.alpha.expected_tokens(self.lengths, per_table)

    def candidate_prompt(self, branch: str, layer: int, length: int) -> torch.Tensor:
        """The ``length``-token candidate of ``layer`` (what the fixed-length model would use)."""
        k = self.candidates.index(length)
        return self._packed(branch, layer)[self.pad_index[k, :length]]


def build_supernet(clip_model, classnames: Sequence[str], branches: Sequence[str] = ("text", "vision"),
                   candidates: Iterable[int] = DEFAULT_CANDIDATES, coupled: bool = False,
                   templates: Sequence[str] = (DEFAULT_TEMPLATE,), merge: str = "features",
                   text_checkpoint: bool = False, **learner_kwargs) -> PromptedCLIP:
    """A :class:`PromptedCLIP` whose prompts are the search's candidate mixtures.

    The text input is the fixed prompt ("a photo of a {}." by default); every searched layer of
    ``branches`` gets candidate prefixes of each length in ``candidates``. ``text_checkpoint``:
    activation checkpointing in the text encoder (see :class:`PromptedCLIP`).
    """
    family = bind(clip_model)
    backbone = family.spec()
    prompts = build_prompts(classnames, templates, 0, "prepend", backbone.context_length, merge=merge,
                            tokenizer=family.tokenizer)
    learner = SupernetPromptLearner(backbone, branches, candidates, coupled, **learner_kwargs)
    learner.to(clip_model.logit_scale.device)
    return PromptedCLIP(clip_model, prompts, learner, text_checkpoint=text_checkpoint)
