"""Several processes (``torchrun``): the one module that imports ``torch.distributed``.

Data and classes are split across processes: each rank runs its share of a batch and its share of
the class texts; text features are gathered with gradients, and the learnable parameters'
gradients are averaged explicitly where they are applied (the search takes them with
``torch.autograd.grad``, which DistributedDataParallel would not see). Every function here is
also correct in one process (no process group), where it does nothing or returns its input.

Collectives must be called by every rank in the same order; hence :func:`all_finite`, which
decides about a loss on all ranks together (a check raising on one rank alone leaves the others
waiting in their next collective forever).
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.distributed as dist


# -- process group and ranks ----------------------------------------------------------------------
def active() -> bool:
    """A process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Rank 0: the one process that writes files, logs and progress."""
    return rank() == 0


def launched() -> bool:
    """Started by ``torchrun`` (or another launcher) with several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(use_cuda: bool = True) -> Optional[torch.device]:
    """Join the process group ``torchrun`` describes in the environment: NCCL with one GPU per
    process (``cuda:LOCAL_RANK``) when GPUs are used, else gloo on the CPU. Returns the device of
    this process, or None when not launched with several processes."""
    if not launched():
        return None
    cuda = use_cuda and torch.cuda.is_available()
    device = torch.device("cpu")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise RuntimeError(f"process {local} of this node has no GPU: {torch.cuda.device_count()} are visible. "
                               f"Start at most that many processes per node (torchrun --nproc_per_node)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def quiet_other_ranks() -> None:
    """Ranks other than 0 print nothing (their stdout goes nowhere); errors still reach stderr."""
    if not is_main():
        sys.stdout = open(os.devnull, "w")


def main_rank_only(record) -> bool:
    """A logging filter (``logger.addFilter(main_rank_only)``): only rank 0's records pass."""
    return is_main()


def barrier() -> None:
    if active():
        dist.barrier()


def rank_seed(seed: int) -> int:
    """A distinct, reproducible seed per rank for what each rank draws on its own (augmentations);
    rank 0 keeps ``seed``, so one process draws exactly what it always did."""
    return seed if rank() == 0 else seed + 104_729 * rank()


# -- classes split across ranks -------------------------------------------------------------------
def shard_range(n: int, rank_: int, world: int) -> range:
    """Rank ``rank_``'s contiguous share of ``n`` items; shares differ by at most one item."""
    base, extra = divmod(n, world)
    start = rank_ * base + min(rank_, extra)
    return range(start, start + base + (rank_ < extra))


def shard(n: int, what: str = "classes") -> range:
    """This rank's share of ``n`` items (all of them in one process)."""
    world = world_size()
    if n < world:
        raise ValueError(f"{world} processes share {n} {what}: every process needs at least one. "
                         f"Start at most {n} processes (torchrun --nproc_per_node)")
    return shard_range(n, rank(), world)


def gather_rows(local: torch.Tensor, total: int) -> torch.Tensor:
    """Every rank's rows of a ``(rows, ...)`` tensor split by :func:`shard`, in rank order, with
    gradients: the backward pass returns to each rank the gradient of its rows summed over the
    ranks' losses, so that averaging parameter gradients afterwards gives the gradient of the mean
    loss."""
    if not active():
        return local
    world = world_size()
    sizes = [len(shard_range(total, r, world)) for r in range(world)]
    pad = max(sizes) - local.shape[0]  # the collective needs equal shapes
    if pad:
        local = torch.cat([local, local.new_zeros(pad, *local.shape[1:])])
    with warnings.catch_warnings():  # deprecated for torch.compile's collectives; right for eager autograd
        warnings.simplefilter("ignore", FutureWarning)
        from torch.distributed.nn.functional import all_gather
        pieces = all_gather(local)
    return torch.cat([piece[:size] for piece, size in zip(pieces, sizes)])


# -- gradients, losses, statistics ----------------------------------------------------------------
def average_gradients(grads: Sequence[Optional[torch.Tensor]]) -> List[Optional[torch.Tensor]]:
    """The mean over ranks of each gradient (None stays None), in one collective."""
    grads = list(grads)
    present = [g for g in grads if g is not None]
    if not active() or not present:
        return grads
    flat = torch.cat([g.reshape(-1).float() for g in present])
    dist.all_reduce(flat)
    flat /= world_size()
    out, offset = [], 0
    for g in grads:
        if g is None:
            out.append(None)
            continue
        out.append(flat[offset: offset + g.numel()].view_as(g).to(g.dtype))
        offset += g.numel()
    return out


def average_parameter_gradients(params: Sequence[torch.Tensor]) -> None:
    """Replace every ``param.grad`` by its mean over ranks (after ``backward``, before the step)."""
    for param, grad in zip(params, average_gradients([p.grad for p in params])):
        if grad is not None:
            param.grad = grad


def all_finite(loss: torch.Tensor) -> bool:
    """Whether ``loss`` is finite on every rank: the same answer on all of them."""
    finite = bool(torch.isfinite(loss).all())
    if not active():
        return finite
    flag = torch.tensor([0.0 if finite else 1.0], device=_collective_device())
    dist.all_reduce(flag)
    return flag.item() == 0


def sum_values(values: Dict[str, float]) -> Dict[str, float]:
    """Each value summed over ranks (counts, e.g. correct predictions and images seen)."""
    if not active():
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor)
    return {k: v for k, v in zip(keys, tensor.tolist())}


def mean_values(values: Dict[str, float]) -> Dict[str, float]:
    """Each value averaged over ranks (per-rank averages over equally many batches)."""
    return {k: v / world_size() for k, v in sum_values(values).items()}


# -- Python objects ---------------------------------------------------------------------------
def gather_objects(obj: Any) -> List[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not active():
        return [obj]
    out: List[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def per_rank(state: Any) -> Any:
    """What each rank holds on its own (random-number and loader states) for a checkpoint that only
    rank 0 writes: the state itself in one process, the list of every rank's with several."""
    return gather_objects(state) if active() else state


def own(state: Any) -> Any:
    """This rank's entry of a :func:`per_rank` value: the single state when one process wrote it;
    rank 0's for a rank that did not exist when it was written (resumed with more processes)."""
    if isinstance(state, list):
        return state[rank()] if rank() < len(state) else state[0]
    return state


def _collective_device() -> torch.device:
    """NCCL reduces CUDA tensors only; gloo CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
