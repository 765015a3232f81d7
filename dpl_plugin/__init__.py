"""dpl-plugin: Differentiable Prompt Learning for the CoOp family of CLIP prompt learners.

The wings, each using only those listed before it: ``errors`` and ``typed_fields`` (the
foundations), ``runtime/`` (processes and files), ``prompt_config``, ``backbones/`` (loading and
describing a CLIP family), ``prompting/`` (how prompts enter a frozen CLIP) with ``designs``,
``engine/`` (the train stage without Dassl), ``search/`` (stage 1), ``demo/``, then ``dassl/``.
"""

from .backbones.interface import CorruptWeightsError, UnsupportedBackboneError, WeightsNotFoundError
from .backbones.registry import load_clip
from .backbones.spec import BackboneSpec
from .designs import DESIGNS, get_design
from .engine import optim
from .engine.averaging import GaussianPromptAveraging
from .engine.objectives import CrossEntropy, KgCoOp, Objective, PromptSRC
from .engine.start_probe import probe_starts
from .engine.training import TrainSettings, evaluate, train_prompts
from .errors import DPLError, NonFiniteLogitsError, NonFiniteLossError, OptionError
from .prompt_config import PromptConfig, PromptConfigError
from .prompting.learners import PromptLearner, PromptSet
from .prompting.model import PromptedCLIP, build_prompted_clip
from .prompting.text_inputs import ContextOverflowError, build_prompts
from .runtime import distributed, sharded_data
from .runtime.reproducibility import seed_everything
from .search import BilevelSearch, SearchResult, SearchSettings, build_supernet
from .search.stage import search_prompt_lengths
from . import demo  # noqa: E402  (the offline demo task; after the library it runs on)

__version__ = "0.1.0"

__all__ = [
    "BackboneSpec", "BilevelSearch", "ContextOverflowError", "CorruptWeightsError", "CrossEntropy", "DESIGNS",
    "DPLError", "GaussianPromptAveraging", "KgCoOp", "Objective", "PromptSRC",
    "NonFiniteLogitsError", "NonFiniteLossError", "OptionError", "PromptConfig", "PromptConfigError",
    "PromptLearner", "PromptSet", "PromptedCLIP", "SearchResult", "SearchSettings", "TrainSettings",
    "UnsupportedBackboneError", "WeightsNotFoundError", "build_prompted_clip", "build_prompts", "build_supernet", "distributed", "evaluate",
    "demo", "get_design", "load_clip", "optim", "probe_starts", "seed_everything", "sharded_data",
    "search_prompt_lengths", "train_prompts",
]
