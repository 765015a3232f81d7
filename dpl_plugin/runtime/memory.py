"""What a forward pass keeps for its backward pass, counted in bytes.

Between forward and backward an accelerator holds the tensors autograd saved, not what the CPU
allocator happens to keep mapped: :class:`SavedActivations` counts them through
``torch.autograd.graph.saved_tensors_hooks``, once per storage (several views of one tensor, or
one tensor saved by several operations, count once), without the model's own weights.

    with SavedActivations(exclude=model.parameters()) as saved:
        loss = model(images).logsumexp(-1).sum()
    print(saved.bytes)

Tensors that ``torch.utils.checkpoint`` keeps for recomputation are not saved tensors and are
not counted.
"""

from __future__ import annotations

from typing import Dict, Iterable

import torch


class SavedActivations:
    """Bytes of the distinct storages saved for backward while the context is open."""

    def __init__(self, exclude: Iterable[torch.Tensor] = ()):
        self._exclude = {t.untyped_storage().data_ptr() for t in exclude}
        self._storages: Dict[int, int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        # A saved tensor stays alive, so no other saved storage can reuse its address.
        if storage.data_ptr() not in self._exclude:
            self._storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    @property
    def bytes(self) -> int:
        return sum(self._storages.values())

    def __enter__(self) -> "SavedActivations":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
