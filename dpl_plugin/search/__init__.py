"""The length search (DPL stage 1): supernet, bi-level loop, discretisation and reports."""

from .bilevel import (CHECKPOINT_FILE, CONFIG_FILE, HISTORY_FILE, BilevelSearch, NonFiniteLossError,
                      SearchResult, SearchSettings, SearchStateMismatchError)
from .history import AlphaHistory, LayerConfidence, derive_config, format_confidence
from .plots import plot_history
from .supernet import ArchitectureLogits, SupernetPromptLearner, build_supernet

__all__ = [
    "AlphaHistory", "ArchitectureLogits", "BilevelSearch", "CHECKPOINT_FILE", "CONFIG_FILE", "HISTORY_FILE",
    "LayerConfidence", "NonFiniteLossError", "SearchResult", "SearchSettings", "SearchStateMismatchError",
    "SupernetPromptLearner", "build_supernet", "derive_config", "format_confidence", "plot_history",
]
