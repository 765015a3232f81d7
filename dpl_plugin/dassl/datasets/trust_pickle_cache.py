"""Convert a CoOp few-shot or ImageNet cache (a pickle) into this project's JSON cache, by choice.

    python -m dpl_plugin.dassl.datasets.trust_pickle_cache DATA/caltech-101/split_fewshot/shot_16-seed_1.pkl

Unpickling runs whatever code the file holds, so the readers never load a ``.pkl``: they sample the
same split again instead. Run this only on a file whose origin you trust (one CoOp wrote on your own
machine), when you need exactly its split; it writes ``<same name>.json`` beside it.
"""

from __future__ import annotations

import os
import pickle
import sys

from .coop_format import save_cache


def convert(pickled: str) -> str:
    with open(pickled, "rb") as f:
        data = pickle.load(f)  # the user vouches for this file: that is the point of this command
    target = os.path.splitext(pickled)[0] + ".json"
    save_cache({key: list(items) for key, items in data.items()}, target)
    return target


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(f"{path} -> {convert(path)}")
