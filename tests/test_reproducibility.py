"""Random states of a checkpoint: the GPU's is the process's own device only, so a run resumes with
fewer GPUs visible than it was saved with. The machine has no GPU: the device *count* is faked
(``torch.cuda`` reports N devices whose generators are CPU generators), while torch's own
``torch.cuda.get_rng_state``/``set_rng_state`` code runs on them."""

import pytest
import torch

from dpl_plugin.runtime.reproducibility import capture_rng_state, restore_rng_state


class FakeGPUs:
    """``count`` visible devices, the process on ``current``; each device's generator a CPU one."""

    def __init__(self, monkeypatch):
        self.monkeypatch = monkeypatch

    def visible(self, count: int, current: int):
        generators = tuple(torch.Generator().manual_seed(1000 + i) for i in range(count))
        for module in (torch.cuda, torch.cuda.random):
            self.monkeypatch.setattr(module, "device_count", lambda: count)
            self.monkeypatch.setattr(module, "current_device", lambda: current)
            self.monkeypatch.setattr(module, "_lazy_init", lambda: None)
            self.monkeypatch.setattr(module, "is_initialized", lambda: True)
        self.monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        self.monkeypatch.setattr(torch.cuda, "default_generators", generators)
        return generators


@pytest.fixture()
def gpus(monkeypatch):
    return FakeGPUs(monkeypatch)


def _draw(generator):
    return torch.rand(3, generator=generator)


def test_a_checkpoint_of_8_visible_gpus_resumes_with_2(gpus):
    saved_on = gpus.visible(count=8, current=1)  # torchrun rank 1 of 8
    _draw(saved_on[1])
    state = capture_rng_state()
    expected = _draw(saved_on[1])  # what the uninterrupted process draws next

    resumed_on = gpus.visible(count=2, current=1)  # rank 1 of 2, resumed with 2 GPUs visible
    restore_rng_state(state)
    torch.testing.assert_close(_draw(resumed_on[1]), expected, rtol=0, atol=0)


def test_only_the_own_device_is_saved_and_restored(gpus):
    generators = gpus.visible(count=4, current=2)
    state = capture_rng_state()
    assert torch.equal(state["cuda"], generators[2].get_state())
    untouched = [g.get_state() for g in generators]
    _draw(generators[2])
    _draw(generators[0])
    restore_rng_state(state)
    assert torch.equal(generators[2].get_state(), untouched[2])
    assert not torch.equal(generators[0].get_state(), untouched[0])  # another process's device: not ours
