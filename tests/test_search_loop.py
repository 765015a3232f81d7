"""The bi-level loop: which loss reaches which parameters, resuming, errors, and what it writes."""

import copy
import json
import logging
from dataclasses import replace

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from conftest import CLASSNAMES
from dpl_plugin import BackboneSpec, PromptConfig
from dpl_plugin.engine.optim import build_lr_scheduler, build_sgd
from dpl_plugin.errors import NonFiniteLossError
from dpl_plugin.search import (CHECKPOINT_FILE, CONFIG_FILE, HISTORY_FILE, BilevelSearch,
                               SearchSettings, SearchStateMismatchError, build_supernet)
from dpl_plugin.search.architect import apply_gradients
from dpl_plugin.search.bilevel import CyclingIterator
from dpl_plugin.search.cost import cost_line, search_cost_in_train_epochs

C = len(CLASSNAMES)


def loaders(n_train=12, n_val=6, seed=0, batch=4):
    g = torch.Generator().manual_seed(seed)
    train = TensorDataset(torch.randn(n_train, 3, 32, 32, generator=g), torch.arange(n_train) % C)
    val = TensorDataset(torch.randn(n_val, 3, 32, 32, generator=g), torch.arange(n_val) % C)
    return DataLoader(train, batch_size=batch, shuffle=True), DataLoader(val, batch_size=2, shuffle=True)


def make_search(clip_model, output_dir=None, epochs=2, seed=0, candidates=(0, 1, 3), device=None, **settings):
    torch.manual_seed(seed)
    model = build_supernet(clip_model, CLASSNAMES, candidates=candidates, nested=settings.get("nested", False))
    optimizer = build_sgd(model.prompt_learner.prompt_parameters(), lr=0.05)
    scheduler = build_lr_scheduler(optimizer, epochs, warmup_epoch=1, warmup_lr=1e-3)
    train, val = loaders()
    settings = SearchSettings(epochs=epochs, **{"plot": False, **settings})
    return BilevelSearch(model, train, val, optimizer, scheduler, settings, output_dir, device)


def test_alpha_learns_from_validation_only_and_prompts_from_training_only(tiny_clip):
    search = make_search(tiny_clip, epochs=1)
    model, learner = search.model, search.learner
    seen = []

    def spy(optimizer, name):
        original = optimizer.step

        def step(*args, **kwargs):
            seen.append((name, {id(p): p.grad for p in learner.parameters()}))
            return original(*args, **kwargs)

        optimizer.step = step

    spy(search.architect.optimizer, "alpha")
    spy(search.prompt_optimizer, "prompts")
    val_batch, train_batch = (torch.randn(2, 3, 32, 32), torch.tensor([1, 3])), (torch.randn(4, 3, 32, 32), torch.arange(4))

    def expected(batch, params):
        loss = torch.nn.functional.cross_entropy(model(batch[0]), batch[1])
        return torch.autograd.grad(loss, params, allow_unused=True)

    want_alpha = expected(val_batch, search.architect.arch_params)
    search.architect.step(val_batch, train_batch)
    want_prompts = expected(train_batch, search.prompt_params)  # after alpha moved, as in the loop
    loss, _, _ = search._loss(train_batch, "training")
    apply_gradients(loss, search.prompt_params, search.prompt_optimizer, search.scaler)

    (name_a, grads_a), (name_p, grads_p) = seen
    assert name_a == "alpha" and name_p == "prompts"
    for p, g in zip(search.architect.arch_params, want_alpha):
        torch.testing.assert_close(grads_a[id(p)], g)
    assert all(grads_a[id(p)] is None for p in search.prompt_params)
    for p, g in zip(search.prompt_params, want_prompts):
        torch.testing.assert_close(grads_p[id(p)], g)
    assert all(grads_p[id(p)] is None for p in search.architect.arch_params)
    assert all(p.grad is None for p in tiny_clip.parameters())


def test_validation_batches_cycle_through_every_sample_reshuffled():
    data = TensorDataset(torch.arange(6))
    cycler = CyclingIterator(DataLoader(data, batch_size=2, shuffle=True))
    torch.manual_seed(0)
    passes = [[int(v) for _ in range(3) for v in next(cycler)[0]] for _ in range(4)]
    assert all(sorted(p) == list(range(6)) for p in passes)  # every validation image, each pass
    assert len({tuple(p) for p in passes}) > 1  # a fresh shuffle per pass, not the same first batch


ALL_OPTIONS = dict(warmup_epochs=1, temperature=(2.0, 0.5), gumbel=True, token_cost=0.05, token_budget=2)
REGULARISED = dict(alpha_noise=0.3, beta_decay=5.0, select="sampled", select_samples=4)
SINGLE_PATHS = dict(paths="single", select="sampled", select_samples=4)


@pytest.mark.parametrize("options", [{}, {"preset": "robust"}, ALL_OPTIONS, REGULARISED,
                                     {"select": "perturbation", "candidates": (0, 2)},  # 2 scores per layer
                                     {"preset": "robust", "nested": True}, SINGLE_PATHS],
                         ids=["paper", "robust", "all-options", "regularised-sampled", "perturbation", "nested",
                              "single-paths"])
def test_interrupted_search_resumes_identically(tiny_clip, tiny_clip_path, tmp_path, options):
    from dpl_plugin import load_clip

    straight = make_search(tiny_clip, str(tmp_path / "a"), epochs=2, **options)
    result = straight.run()

    class Interrupt(Exception):
        pass

    interrupted = make_search(load_clip(tiny_clip_path), str(tmp_path / "b"), epochs=2, **options)
    real_loss = interrupted._loss

    def dies_in_epoch_two(batch, phase):  # the process is killed in the middle of the last epoch
        if interrupted.epoch == 1 and interrupted.iteration == 1 and phase.startswith("training"):
            raise Interrupt
        return real_loss(batch, phase)

    interrupted._loss = dies_in_epoch_two
    with pytest.raises(Interrupt):
        interrupted.run()
    assert torch.load(tmp_path / "b" / CHECKPOINT_FILE, weights_only=True)["epoch"] == 1

    torch.manual_seed(1234)  # a new process: different seed state, fresh objects
    resumed = make_search(load_clip(tiny_clip_path), str(tmp_path / "b"), epochs=2, seed=99, **options)
    resumed_result = resumed.run()
    for (name, a), (_, b) in zip(straight.learner.state_dict().items(), resumed.learner.state_dict().items()):
        assert torch.equal(a, b), name
    assert resumed_result.history.tables == result.history.tables
    assert resumed_result.config == result.config
    assert resumed_result.samples == result.samples


def test_a_search_on_another_device_resumes_with_its_random_states_on_the_cpu(tiny_clip, tiny_clip_path, tmp_path):
    """The search's device is ``meta`` (standing in for ``cuda:N``: tensors there have no CPU data).
    Its checkpoint, of a finished search, is resumed; nothing is left to run but the final
    evaluation, which runs where the model is (the CPU)."""
    from dpl_plugin import load_clip

    finished = make_search(tiny_clip, str(tmp_path), epochs=1)
    result = finished.run()
    rng_after = torch.get_rng_state()
    torch.manual_seed(7)
    resumed = make_search(load_clip(tiny_clip_path), str(tmp_path), epochs=1, seed=5, device=torch.device("meta"))
    resumed_result = resumed.run()
    assert resumed.epoch == 1
    for (name, a), (_, b) in zip(finished.learner.state_dict().items(), resumed.learner.state_dict().items()):
        assert torch.equal(a, b), name
    assert resumed_result.val_accuracy == result.val_accuracy
    assert torch.equal(torch.get_rng_state(), rng_after)  # the saved random state, restored


def test_outputs_are_written_and_read_back(tiny_clip, tmp_path):
    search = make_search(tiny_clip, str(tmp_path), epochs=2, plot=True)
    result = search.run()
    config = PromptConfig.load(str(tmp_path / CONFIG_FILE), backbone=BackboneSpec.of(tiny_clip))
    assert config == result.config and config.insertion == "prefix" and config.max_length == 3
    assert set(config.text) <= {0, 1, 3} and len(config.text) == 3
    confidence = config.provenance["confidence"]
    assert set(confidence) == {"text", "vision"} and len(confidence["text"]) == 3
    first = confidence["text"][0]
    assert set(first) == {"layer", "length", "probability", "margin", "entropy", "stable_since"}
    probs = torch.softmax(search.learner.alpha.tables["text"][0].detach(), 0)
    assert first["probability"] == pytest.approx(probs.max().item(), abs=1e-4)
    history = json.loads((tmp_path / HISTORY_FILE).read_text())
    assert history["candidates"] == [0, 1, 3] and len(history["tables"]["vision"]) == 2
    for branch in ("text", "vision"):
        png = tmp_path / f"alpha_{branch}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nan_loss_stops_naming_the_step_and_keeps_the_checkpoint(tiny_clip, tmp_path):
    search = make_search(tiny_clip, str(tmp_path), epochs=2)
    search.run()
    before = (tmp_path / CHECKPOINT_FILE).read_bytes()
    again = make_search(tiny_clip, str(tmp_path), epochs=3)
    with torch.no_grad():
        again.learner.text["1"].fill_(float("nan"))  # overwritten by resume; poison after loading:
    original = again.load_state_dict

    def load_then_poison(state):
        original(state)
        with torch.no_grad():
            again.learner.vision["0"].fill_(float("nan"))

    again.load_state_dict = load_then_poison
    with pytest.raises(NonFiniteLossError, match=r"validation \(alpha step\) loss is nan at epoch 3, iteration 1"):
        again.run()
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before
    assert PromptConfig.load(str(tmp_path / CONFIG_FILE)).provenance["epochs"] == 2


def test_empty_validation_loader_is_a_clear_error(tiny_clip):
    search = make_search(tiny_clip)
    search.val_batches = CyclingIterator(DataLoader(TensorDataset(torch.zeros(0, 3, 32, 32), torch.zeros(0))))
    with pytest.raises(ValueError, match="validation loader yields no batches"):
        search.run()


def test_resume_refuses_a_checkpoint_of_another_search(tiny_clip, tmp_path):
    make_search(tiny_clip, str(tmp_path), epochs=1).run()
    other = make_search(tiny_clip, str(tmp_path), epochs=2, candidates=(0, 2, 4, 6))
    with pytest.raises(SearchStateMismatchError, match=r"another backbone, design, candidate set or search option: candidates: \[0, 1, 3\] -> \[0, 2, 4, 6\]"):
        other.run()


def test_resume_refuses_a_checkpoint_of_other_candidate_layout(tiny_clip, tmp_path):
    make_search(tiny_clip, str(tmp_path), epochs=1).run()
    nested = make_search(tiny_clip, str(tmp_path), epochs=2, nested=True)
    with pytest.raises(SearchStateMismatchError, match=r"search option: settings\.nested: False -> True"):
        nested.run()


def test_a_checkpoint_from_before_later_options_existed_resumes_as_their_legacy_values(tiny_clip, tmp_path, caplog):
    make_search(tiny_clip, str(tmp_path), epochs=1).run()
    path = tmp_path / CHECKPOINT_FILE
    state = torch.load(path, weights_only=True)
    for name in ("nested", "paths", "select", "select_samples", "select_from", "alpha_noise", "beta_decay"):
        del state["signature"]["settings"][name]  # as a dpl-plugin without these options wrote it
    torch.save(state, path)
    with pytest.raises(SearchStateMismatchError, match=r"settings\.nested: False -> True"):
        make_search(tiny_clip, str(tmp_path), epochs=2, nested=True).run()
    resumed = make_search(tiny_clip, str(tmp_path), epochs=2)
    with caplog.at_level(logging.INFO, logger="dpl_plugin"):
        assert resumed.run().config.provenance["epochs"] == 2
    assert "Resumed the search from" in caplog.text and "after epoch 1" in caplog.text  # not refused, not redone


def test_prompt_optimizer_must_not_hold_alpha(tiny_clip):
    model = build_supernet(tiny_clip, CLASSNAMES, candidates=(0, 1))
    train, val = loaders()
    with pytest.raises(ValueError, match="holds alpha"):
        BilevelSearch(model, train, val, build_sgd(model.prompt_learner.parameters()))


def test_early_stop_once_every_layer_is_stable(tiny_clip, tmp_path):
    search = make_search(tiny_clip, str(tmp_path), epochs=20, early_stop_patience=2)
    search.architect.optimizer.param_groups[0]["lr"] = 0.0  # choices cannot change: stable from epoch 1
    result = search.run()
    assert result.epochs_run == 2 and result.history.epochs == 2


@pytest.mark.parametrize("peak, epochs_run", [(3.0, 1), (0.0, 3)], ids=["decided", "undecided"])
def test_early_stop_once_every_layer_has_decided(tiny_clip, peak, epochs_run):
    search = make_search(tiny_clip, epochs=3, early_stop_confidence=0.6)
    search.architect.optimizer.param_groups[0]["lr"] = 0.0  # alpha stays where it is put
    with torch.no_grad():  # peak 3 over 3 candidates: top probability 0.91; peak 0: 1/3, undecided
        for table in search.learner.alpha.tables.values():
            table.zero_()[:, 1] = peak
    assert search.run().epochs_run == epochs_run


@pytest.mark.parametrize("options, per_epoch", [
    ({}, [12 + 3 * 2, 12 + 3 * 2]),  # 3 prompt steps on batches of 4, each after an alpha step on 2
    ({"warmup_epochs": 1}, [12, 12 + 3 * 2]),  # no alpha steps while warming up
    ({"second_order": True}, [3 * (4 * 4 + 2)] * 2),  # unrolled: the training batch 3 more times per step
    (SINGLE_PATHS, [12, 12]),  # no alpha steps at all
], ids=["first-order", "warm-up", "second-order", "single-paths"])
def test_search_counts_the_samples_it_processes(tiny_clip, options, per_epoch):
    search = make_search(tiny_clip, epochs=2, **options)  # 12 training images in batches of 4, validation in 2s
    assert search.run().samples == sum(per_epoch)
    # the cost a run announces before it starts: the same count, in passes over the 12 training images
    settings = replace(search.settings, batch_size=4, val_batch_size=2)
    assert search_cost_in_train_epochs(settings) * 12 == sum(per_epoch)
    line = cost_line(settings, train_epochs=4)
    assert line.startswith(f"search cost: 2 epochs = {sum(per_epoch) / 12:g} passes over the training split")
    assert line.endswith("(SELECT sampled)") == (settings.select == "sampled")


def test_single_path_search_trains_drawn_candidates_alone_and_never_alpha(tiny_clip, images):
    search = make_search(tiny_clip, epochs=1, **SINGLE_PATHS)
    learner, model = search.learner, search.model
    alpha = {k: t.detach().clone() for k, t in learner.alpha.tables.items()}
    search._set_relaxation()
    model.train()
    noise = learner.alpha.noise.get_state()
    weights = learner.alpha.mixture_weights()  # what the next forward draws: one candidate per layer
    learner.alpha.noise.set_state(noise)
    drawn = {k: w.argmax(dim=1).tolist() for k, w in weights.items()}
    assert all(torch.equal(w.sum(dim=1), torch.ones(len(w))) and set(w.unique().tolist()) == {0.0, 1.0}
               for w in weights.values())
    loss = torch.nn.functional.cross_entropy(model(images), torch.tensor([0, 1, 2, 3]))
    grads = dict(zip(["text", "vision"], torch.autograd.grad(loss, [learner.text["0"], learner.vision["0"]])))
    for branch, grad in grads.items():  # layer 0's packed candidates: rows of the drawn one only
        rows = learner.pad_index[drawn[branch][0], :learner.candidates[drawn[branch][0]]]
        used = torch.zeros(grad.shape[0], dtype=torch.bool)
        used[rows] = True
        assert torch.equal(grad[~used], torch.zeros_like(grad[~used])) and (grad[used].abs().sum(dim=1) > 0).all()
    result = search.run()
    assert all(torch.equal(learner.alpha.tables[k].detach(), alpha[k]) for k in alpha)  # never stepped
    assert result.selection.method == "sampled" and result.selection.scored >= 1
    assert result.val_accuracy == result.selection.best.accuracy  # the chosen configuration's score


@pytest.mark.parametrize("options, message", [
    (dict(paths="single"), r"PATHS single trains no alpha, so SELECT argmax .* set SELECT sampled"),
    (dict(paths="single", select="sampled", early_stop_patience=2), r"EARLY_STOP .* PATHS single does not train"),
    (dict(paths="one"), r"PATHS must be one of \['mixture', 'single'\], got 'one'"),
])
def test_single_paths_refuse_what_needs_a_trained_alpha(options, message):
    with pytest.raises(ValueError, match=message):
        SearchSettings(**options).resolved()


def test_second_order_step_matches_exact_hypergradient(tiny_clip):
    """DARTS's finite-difference alpha gradient against autograd through the unrolled step."""
    search = make_search(tiny_clip, epochs=1, second_order=True)
    for group in search.prompt_optimizer.param_groups:
        group["weight_decay"] = 0.0
    xi = search.prompt_optimizer.param_groups[0]["lr"]
    g = torch.Generator().manual_seed(5)
    val = (torch.randn(2, 3, 32, 32, generator=g), torch.tensor([0, 4]))
    train = (torch.randn(4, 3, 32, 32, generator=g), torch.arange(4))
    model, params, arch = search.model, search.prompt_params, search.architect.arch_params
    ce = torch.nn.functional.cross_entropy

    # exact: d/d alpha of L_val(w - xi * grad_w L_train(w, alpha), alpha)
    grads = torch.autograd.grad(ce(model(train[0]), train[1]), params, create_graph=True, allow_unused=True)
    saved = [p.detach().clone() for p in params]
    unrolled = {p: p - xi * gp if gp is not None else p for p, gp in zip(params, grads)}
    learner = search.learner
    names = {id(p): n for n, p in learner.named_parameters()}
    logits = torch.func.functional_call(learner, {names[id(p)]: v for p, v in unrolled.items()}, ())
    vision = search.model.encode_image(val[0], logits)
    text = search.model.encode_text(logits)
    exact = torch.autograd.grad(ce(model.logit_scale.exp() * vision @ text.t(), val[1]), arch)

    captured = {}
    step = search.architect.optimizer.step
    search.architect.optimizer.step = lambda: captured.update({id(a): a.grad.clone() for a in arch}) or step()
    search.architect.step(val, train)
    first_order = torch.autograd.grad(ce(model(val[0]), val[1]), arch)
    for a, e, f in zip(arch, exact, first_order):
        assert (captured[id(a)] - e).norm() / e.norm() < 1e-4  # finite differences: ~1e-7 measured
        assert (f - e).norm() / e.norm() > 1e-3  # ... and the second-order term is really there
    assert all(torch.equal(p, s) for p, s in zip(params, saved))  # prompts restored exactly


def test_second_order_unrolls_to_the_prompt_optimizers_next_step(tiny_clip):
    """The unrolled prompts are where the prompt optimizer's next SGD step takes them: momentum
    buffer, weight decay and all (DARTS's _compute_unrolled_model), not a plain gradient step."""
    search = make_search(tiny_clip, epochs=1, second_order=True)
    g = torch.Generator().manual_seed(5)
    val = (torch.randn(2, 3, 32, 32, generator=g), torch.tensor([0, 4]))
    train = (torch.randn(4, 3, 32, 32, generator=g), torch.arange(4))
    params, optimizer = search.prompt_params, search.prompt_optimizer
    for batch in (train, val):  # two real steps: a non-empty momentum buffer
        loss, _, _ = search._loss(batch, "training")
        apply_gradients(loss, params, optimizer, search.scaler)
    assert all(optimizer.state[p]["momentum_buffer"].abs().sum() > 0 for p in params if p.requires_grad)
    saved, state = [p.detach().clone() for p in params], copy.deepcopy(optimizer.state_dict())
    loss, _, _ = search._loss(train, "training")
    apply_gradients(loss, params, optimizer, search.scaler)
    next_step = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, w in zip(params, saved):
            p.copy_(w)
    optimizer.load_state_dict(state)

    seen = {}
    real_loss = search._loss

    def recording(batch, phase):
        seen.setdefault(phase, [p.detach().clone() for p in params])
        return real_loss(batch, phase)

    search._loss = recording
    search.architect.step(val, train)
    for unrolled, expected in zip(seen["validation (alpha step)"], next_step):
        torch.testing.assert_close(unrolled, expected)
    assert all(torch.equal(p, w) for p, w in zip(params, saved))  # prompts restored exactly


def test_search_puts_prompts_where_the_task_needs_them(tiny_clip):
    """Vision layers 0 and 2 are made blind to prompts (their attention output is switched off),
    layer 1 is not; the labels disagree with zero-shot CLIP, so fitting them needs prompts. The
    search must choose a non-empty prompt for layer 1 and leave the blind layers' logits alone
    (they receive exactly zero gradient, so with equal initial logits they keep 0 tokens)."""
    with torch.no_grad():
        for layer in (0, 2):
            tiny_clip.visual.transformer.resblocks[layer].attn.out_proj.weight.zero_()
            tiny_clip.visual.transformer.resblocks[layer].attn.out_proj.bias.zero_()
    g = torch.Generator().manual_seed(0)
    prototypes = torch.randn(C, 3, 32, 32, generator=g)

    def split(n):
        labels = torch.arange(n) % C
        return TensorDataset(prototypes[labels] + 0.3 * torch.randn(n, 3, 32, 32, generator=g), labels)

    train, val = split(40), split(20)
    torch.manual_seed(0)
    model = build_supernet(tiny_clip, CLASSNAMES, branches=("vision",), candidates=(0, 2, 6),
                           vision_init="normal:0.02", alpha_init_std=0.0)
    zero_shot = model(val.tensors[0]).argmax(1)
    assert (zero_shot == val.tensors[1]).float().mean() <= 0.4
    optimizer = build_sgd(model.prompt_learner.prompt_parameters(), lr=1.0)
    search = BilevelSearch(model, DataLoader(train, batch_size=8, shuffle=True), DataLoader(val, batch_size=8, shuffle=True),
                           optimizer, settings=SearchSettings(epochs=12, alpha_lr=0.05, plot=False))
    result = search.run()
    assert result.config.vision[0] == 0 and result.config.vision[2] == 0
    assert result.config.vision[1] > 0
    probs = model.prompt_learner.alpha.probabilities("vision").detach()
    assert probs[1, 0] < 0.25  # "no prompt" lost clearly at the layer that matters
    assert torch.equal(model.prompt_learner.alpha.tables["vision"][[0, 2]], torch.zeros(2, 3))
