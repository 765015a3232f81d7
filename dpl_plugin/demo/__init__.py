"""An offline demo backbone: a tiny CLIP (the real ``clip.model.CLIP`` class) pretrained on
Fashion-MNIST, so that DPL can be run end to end without a GPU, internet access or datasets.

``fashion_mnist`` loads the data; ``pretrain`` deterministically trains the shipped weights
(``weights/demo_clip.pt.gz``).
"""

from .task import DEFAULT_SHIFT, as_datasets, demo_splits

__all__ = ["DEFAULT_SHIFT", "as_datasets", "demo_splits"]
