"""dpl-plugin: Differentiable Prompt Learning for the CoOp family of CLIP prompt learners."""

from .backbone import BackboneSpec, CorruptWeightsError, WeightsNotFoundError, load_clip
from .config import PromptConfig, PromptConfigError
from .learners import PromptLearner, PromptSet
from .model import PromptedCLIP, build_prompted_clip
from .text_inputs import ContextOverflowError, build_prompts

__version__ = "0.1.0"

__all__ = [
    "BackboneSpec", "ContextOverflowError", "CorruptWeightsError", "PromptConfig", "PromptConfigError",
    "PromptLearner", "PromptSet", "PromptedCLIP", "WeightsNotFoundError", "build_prompted_clip",
    "build_prompts", "load_clip",
]
