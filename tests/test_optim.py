import io
import math

import pytest
import torch

from conftest import epoch_lrs
from dpl_plugin.engine.optim import build_lr_scheduler, build_sgd


def test_constant_warmup_then_cosine_as_dassl_steps_it():
    """Dassl 0.6.3 (WARMUP_RECOUNT=True): warm-up lr for W epochs, then cosine(e - W) with T=max_epoch."""
    optimizer = build_sgd([torch.nn.Parameter(torch.zeros(1))], lr=0.002)
    got = epoch_lrs(optimizer, build_lr_scheduler(optimizer, max_epoch=10, warmup_epoch=1, warmup_lr=1e-5), 10)
    expected = [1e-5] + [0.002 * (1 + math.cos(math.pi * (e - 1) / 10)) / 2 for e in range(1, 10)]
    assert got == pytest.approx(expected, rel=1e-9)


def test_linear_warmup_and_no_warmup():
    optimizer = build_sgd([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    got = epoch_lrs(optimizer, build_lr_scheduler(optimizer, 6, warmup_epoch=2, warmup_type="linear", warmup_lr=1e-4), 4)
    assert got == pytest.approx([1e-4, 0.005, 0.01, 0.01 * (1 + math.cos(math.pi / 6)) / 2])
    optimizer = build_sgd([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01), T_max=5)
    ours = build_lr_scheduler(optimizer, 5, warmup_epoch=0)
    assert epoch_lrs(optimizer, ours, 5) == pytest.approx(epoch_lrs(reference.optimizer, reference, 5))


def test_scheduler_state_is_plain_data_and_resumes():
    optimizer = build_sgd([torch.nn.Parameter(torch.zeros(1))], lr=0.002)
    scheduler = build_lr_scheduler(optimizer, 10)
    epoch_lrs(optimizer, scheduler, 3)
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # Dassl's warm-up schedulers fail exactly here
    fresh_opt = build_sgd([torch.nn.Parameter(torch.zeros(1))], lr=0.002)
    fresh = build_lr_scheduler(fresh_opt, 10)
    fresh.load_state_dict(state)
    fresh_opt.param_groups[0]["lr"] = scheduler.get_last_lr()[0]
    assert epoch_lrs(fresh_opt, fresh, 7) == pytest.approx(epoch_lrs(optimizer, scheduler, 7))
