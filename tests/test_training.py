import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from conftest import CLASSNAMES
from dpl_plugin import PromptConfig, build_prompted_clip
from dpl_plugin.errors import NonFiniteLossError
from dpl_plugin.engine.training import TrainSettings, evaluate, train_prompts


def data(n=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(CLASSNAMES)
    prototypes = torch.randn(len(CLASSNAMES), 3, 32, 32, generator=g)
    return TensorDataset(prototypes[labels] + 0.2 * torch.randn(n, 3, 32, 32, generator=g), labels)


def test_training_fits_prompts_and_evaluate_counts_correctly(tiny_clip):
    torch.manual_seed(0)
    model = build_prompted_clip(tiny_clip, CLASSNAMES, PromptConfig.ivlp(4, 4, 3, 3, 3, 3))
    loader = DataLoader(data(), batch_size=5, shuffle=True)
    frozen = {k: v.clone() for k, v in tiny_clip.state_dict().items()}
    history = train_prompts(model, loader, TrainSettings(epochs=8, lr=0.5, warmup_epochs=0), progress=False)
    after = evaluate(model, loader, progress=False)
    assert history[-1]["loss"] < history[0]["loss"] - 0.1
    with torch.no_grad():
        x, y = data().tensors
        assert after == pytest.approx(100.0 * (model(x).argmax(1) == y).float().mean().item())
    assert all(torch.equal(v, tiny_clip.state_dict()[k]) for k, v in frozen.items())  # CLIP untouched


def test_non_finite_loss_stops_training(tiny_clip):
    model = build_prompted_clip(tiny_clip, CLASSNAMES, PromptConfig.coop(4, 3, 3))
    with torch.no_grad():
        model.prompt_learner.text["0"].fill_(float("inf"))
    with pytest.raises(NonFiniteLossError, match="training loss is nan at epoch 1, iteration 1"):
        train_prompts(model, DataLoader(data(), batch_size=5), TrainSettings(epochs=1), progress=False)


def test_all_zero_configuration_has_nothing_to_train(tiny_clip):
    model = build_prompted_clip(tiny_clip, CLASSNAMES, PromptConfig.zeros(3, 3))
    with pytest.raises(ValueError, match="no learnable prompts"):
        train_prompts(model, DataLoader(data(), batch_size=5), progress=False)


def test_evaluate_refuses_nan_inputs_instead_of_reporting_an_accuracy(tiny_clip):
    model = build_prompted_clip(tiny_clip, CLASSNAMES, PromptConfig.coop(4, 3, 3))
    images, labels = data(10).tensors
    images[7, 0, 3, 3] = float("nan")  # one pixel of one image in the second batch
    with pytest.raises(NonFiniteLossError, match="logits are NaN or infinite for 1 of 5 images at evaluation batch 2"):
        evaluate(model, DataLoader(TensorDataset(images, labels), batch_size=5), progress=False)


def test_training_on_an_empty_loader_is_an_error_not_a_loss_of_zero(tiny_clip):
    model = build_prompted_clip(tiny_clip, CLASSNAMES, PromptConfig.coop(4, 3, 3))
    empty = DataLoader(TensorDataset(torch.zeros(0, 3, 32, 32), torch.zeros(0, dtype=torch.long)), batch_size=5)
    before = model.prompt_learner.text["0"].clone()
    with pytest.raises(ValueError, match="training loader yields no batches: nothing was trained"):
        train_prompts(model, empty, TrainSettings(epochs=2), progress=False)
    assert torch.equal(model.prompt_learner.text["0"], before)
