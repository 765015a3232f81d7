"""Class-name lists of the 11 few-shot benchmark datasets, as CoOp's dataset readers produce them.

Shipped as data (``dpl_plugin/data/classnames``, sources in ``SOURCES.md`` there) so that prompt
lengths can be checked against the 77-token context and text-side costs measured without the
datasets themselves.
"""

from __future__ import annotations

import os
from typing import List

BENCHMARK_DATASETS = (
    "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
    "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101",
)
_DIR = os.path.join(os.path.dirname(__file__), "data", "classnames")


def benchmark_classnames(dataset: str) -> List[str]:
    if dataset not in BENCHMARK_DATASETS:
        raise KeyError(f"no class-name list for '{dataset}'; known: {', '.join(BENCHMARK_DATASETS)}")
    with open(os.path.join(_DIR, dataset + ".txt"), encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]
