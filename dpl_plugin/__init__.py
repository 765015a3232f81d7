"""dpl-plugin: Differentiable Prompt Learning for the CoOp family of CLIP prompt learners."""

from . import optim
from .backbone import BackboneSpec, CorruptWeightsError, WeightsNotFoundError, load_clip
from .config import PromptConfig, PromptConfigError
from .designs import DESIGNS, get_design
from .learners import PromptLearner, PromptSet
from .model import PromptedCLIP, build_prompted_clip
from .search import BilevelSearch, SearchSettings, build_supernet
from .text_inputs import ContextOverflowError, build_prompts

__version__ = "0.1.0"

__all__ = [
    "BackboneSpec", "BilevelSearch", "ContextOverflowError", "CorruptWeightsError", "DESIGNS", "PromptConfig",
    "PromptConfigError", "PromptLearner", "PromptSet", "PromptedCLIP", "SearchSettings", "WeightsNotFoundError",
    "build_prompted_clip", "build_prompts", "build_supernet", "get_design", "load_clip", "optim",
]
