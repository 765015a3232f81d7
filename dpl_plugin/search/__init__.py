"""The length search (DPL stage 1): supernet, bi-level loop, discretisation and reports."""

from .architect import Architect
from .bilevel import CHECKPOINT_FILE, CONFIG_FILE, HISTORY_FILE, BilevelSearch, SearchResult, SearchStateMismatchError
from .discretize import ConfidenceSummary, confidence_summary, derive_config
from .history import AlphaHistory, LayerConfidence, format_confidence
from .plots import plot_history
from .settings import PRESETS, SearchSettings
from .supernet import ArchitectureLogits, SupernetPromptLearner, build_supernet

__all__ = [
    "AlphaHistory", "Architect", "ArchitectureLogits", "BilevelSearch", "CHECKPOINT_FILE", "CONFIG_FILE",
    "ConfidenceSummary", "HISTORY_FILE", "LayerConfidence", "PRESETS", "SearchResult", "SearchSettings",
    "SearchStateMismatchError", "SupernetPromptLearner", "build_supernet", "confidence_summary", "derive_config",
    "format_confidence", "plot_history",
]
