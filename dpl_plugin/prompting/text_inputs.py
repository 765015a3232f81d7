"""Class prompts as token sequences: templates, placeholder slots, EOT positions, context checks.

Every design feeds the text encoder the tokens of ``template.format(classname)`` (with ``_`` in
class names read as spaces, as the baselines do), preceded by ``n_slots`` *slot* positions right
after SOS that the learnable layer-0 tokens fill under native insertion:

* ``prepend``: slots are extra placeholder tokens ("X X ... X a photo of a cat.") -- CoOp's and
  MaPLe's form for randomly initialised context;
* ``overlay``: slots are the first ``n_slots`` tokens of the template itself, which also give their
  initial values ("[a photo] of a cat." with "a photo" learnable) -- CoOp/MaPLe with ``ctx_init``.

Sequences are cut just after the last EOT among the classes: with causal attention, positions after
a sequence's EOT never influence it, so the result is exact and the text side gets much cheaper.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

from ..backbones.interface import BPETokenizer
from ..backbones.registry import default_tokenizer
from ..errors import ArgumentTypeError, DPLError
from .templates import DEFAULT_TEMPLATE

PLACEHOLDER = "X"
MERGES = ("features", "embeddings")


class ContextOverflowError(DPLError, ValueError):
    """A class prompt does not fit CLIP's text context."""


def clean_classname(name: str) -> str:
    return name.replace("_", " ")


def bpe(text: str, tokenizer: Optional[BPETokenizer] = None) -> List[int]:
    """Token ids of ``text`` (no start or end marker) under the backbone's tokenizer (openai clip's
    when none is given)."""
    return (tokenizer or default_tokenizer()).encode(text)


@dataclass
class TokenizedPrompts:
    """Token ids of every (class, template) prompt, class-major: row ``c * T + t``."""

    tokens: torch.Tensor  # (C * T, L) int64, cut after the last EOT
    eot: torch.Tensor  # (C * T,) index of each row's EOT
    n_slots: int  # layer-0 slot positions [1, 1 + n_slots) in every row
    num_classes: int
    num_templates: int
    overlay_text: Optional[str] = None  # the template words the slots start from, if overlaid
    # How several templates become one class feature: "features" averages the normalised text
    # features (CLIP's zero-shot ensembling); "embeddings" averages the templates' input token
    # embeddings and reads the feature at the last template's EOT (the official DPL train stage:
    # one sequence per class, so the text side costs no more than a single template).
    merge: str = "features"

    @property
    def length(self) -> int:
        return self.tokens.shape[1]


def check_classnames(classnames) -> List[str]:
    """``classnames`` as a list of strings; one string (``"abc"`` would be 3 classes), a mapping, an
    empty list or a name that is not a string is an :class:`~dpl_plugin.errors.ArgumentTypeError`."""
    if isinstance(classnames, (str, bytes)) or not hasattr(classnames, "__iter__") or hasattr(classnames, "keys"):
        raise ArgumentTypeError(f"classnames must be a list of class names, got {type(classnames).__name__} "
                                f"{classnames!r:.60}: pass [{classnames!r:.40}] for a single class")
    names = list(classnames)
    if not names:
        raise ArgumentTypeError("no class names given: pass a list of class names (at least two for a classifier)")
    wrong = [n for n in names if not isinstance(n, str)]
    if wrong:
        raise ArgumentTypeError(f"class names must be strings, got {type(wrong[0]).__name__} {wrong[0]!r:.60}")
    return names


def build_prompts(
    classnames: Sequence[str],
    templates: Sequence[str] = (DEFAULT_TEMPLATE,),
    n_slots: int = 0,
    slot_mode: str = "prepend",
    context_length: int = 77,
    truncate: bool = True,
    merge: str = "features",
    tokenizer: Optional[BPETokenizer] = None,
) -> TokenizedPrompts:
    """Tokenize ``template.format(class)`` for every class and template, with ``n_slots`` slots.

    Raises :class:`ContextOverflowError` naming the class whose prompt exceeds ``context_length``.
    ``truncate=False`` keeps all ``context_length`` positions (the reference computation).
    ``tokenizer``: the backbone's (``dpl_plugin.backbones.registry.bind(model).tokenizer``);
    openai clip's when None.
    """
    if slot_mode not in ("prepend", "overlay"):
        raise ValueError(f"slot_mode must be 'prepend' or 'overlay', got '{slot_mode}'")
    if merge not in MERGES:
        raise ValueError(f"merge must be one of {MERGES}, got '{merge}'")
    classnames = check_classnames(classnames)
    tok = tokenizer or default_tokenizer()
    rows, overlay_text = [], None
    for name in classnames:
        for template in templates:
            body = tok.encode(template.format(clean_classname(name)))
            if slot_mode == "overlay":
                overlay_text = _check_overlay(template, body, n_slots, overlay_text, tok)
                ids = [tok.sot] + body + [tok.eot]
            else:
                slots = tok.encode(" ".join([PLACEHOLDER] * n_slots)) if n_slots else []
                ids = [tok.sot] + slots + body + [tok.eot]
            if len(ids) > context_length:
                raise ContextOverflowError(
                    f"class '{name}' does not fit CLIP's {context_length}-token context: "
                    f"'{template.format(clean_classname(name))}' with {n_slots} prompt token(s) needs "
                    f"{len(ids)} tokens. Shorten this class name (or use fewer input prompt tokens)."
                )
            rows.append(ids)
    eot = torch.tensor([len(r) - 1 for r in rows])
    length = int(eot.max()) + 1 if truncate else context_length
    tokens = torch.zeros(len(rows), length, dtype=torch.long)
    for i, ids in enumerate(rows):
        tokens[i, : len(ids)] = torch.tensor(ids)
    return TokenizedPrompts(tokens, eot, n_slots, len(classnames), len(templates), overlay_text, merge)


def _check_overlay(template: str, body: List[int], n_slots: int, previous: Optional[str],
                   tokenizer: BPETokenizer) -> str:
    prefix = tokenizer.encode(template.split("{}")[0])
    if n_slots > len(prefix):
        raise ValueError(
            f"cannot overlay {n_slots} learnable tokens on the template '{template}': its text before "
            f"the class name has only {len(prefix)} tokens. Use slot_mode='prepend' (random init)."
        )
    text = tokenizer.decode(prefix[:n_slots]).strip()
    if previous is not None and previous != text:
        raise ValueError("overlay slots need all templates to start with the same words")
    return text


def plan_text_input(insertion: str, n_input: int, ctx_init: str = "", templates: Optional[Sequence[str]] = None,
                    tokenizer: Optional[BPETokenizer] = None):
    """Templates, slot count and slot mode for a design's text input (the baselines' rules).

    * prefix insertion, or no input tokens: the fixed prompt ("a photo of a {}." by default);
    * native with ``ctx_init`` of at least ``n_input`` tokens: the first ``n_input`` tokens of
      "{ctx_init} {}." become learnable, starting from their embeddings (CoOp/MaPLe ``CTX_INIT``);
    * otherwise ``n_input`` placeholder slots before "{}." (CoOp/MaPLe random initialisation).
    """
    if insertion != "native" or n_input == 0:
        return list(templates or [DEFAULT_TEMPLATE]), 0, "prepend"
    ctx_init = clean_classname(ctx_init).strip()
    n_words = len(bpe(ctx_init, tokenizer))
    if ctx_init and n_input <= n_words:
        return [f"{ctx_init} {{}}."], n_input, "overlay"
    if ctx_init:
        warnings.warn(
            f"ctx_init '{ctx_init}' has {n_words} tokens, fewer than the {n_input} input prompt tokens: "
            f"they start random before '{{}}.' (MaPLe/IVLP's rule). CoOp instead uses one token per init "
            f"word: PromptConfig.coop(n_ctx={n_words}).", stacklevel=3)
    return list(templates or ["{}."]), n_input, "prepend"
