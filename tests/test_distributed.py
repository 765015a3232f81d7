"""Two processes (gloo on the CPU, spawned here) against one: the same search, training and
evaluation on the same global batches, the class prompts split across the processes, files from
rank 0 only, a non-finite loss on one rank stopping both, a resumed two-process search, one Gumbel
sample shared by the processes, and a validation accuracy that counts no padded image."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset

from conftest import CLASSNAMES
from dpl_plugin import PromptConfig, build_prompted_clip, load_clip
from dpl_plugin.runtime import distributed
from dpl_plugin.runtime import sharded_data
from dpl_plugin.engine.optim import build_lr_scheduler, build_sgd
from dpl_plugin.search import BilevelSearch, SearchSettings, build_supernet
from dpl_plugin.search.bilevel import CHECKPOINT_FILE, CyclingIterator
from dpl_plugin.errors import NonFiniteLossError, OptionError
from dpl_plugin.engine.training import TrainSettings, evaluate, train_prompts

WORLD = 2
C = len(CLASSNAMES)  # 5 classes: 3 on rank 0, 2 on rank 1


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, 32, 32, generator=g), torch.arange(n) % C)


class Interrupt(Exception):
    pass


def _search(clip, output_dir, epochs=2, interrupt_at=None):
    torch.manual_seed(0)  # the same initial prompts and alpha on every rank
    model = build_supernet(clip, CLASSNAMES, candidates=(0, 1, 3))
    encoded = []  # how many classes this process's text encoder saw per call
    model.text_encoder.register_forward_hook(lambda module, args, out: encoded.append(args[0].num_classes))
    optimizer = build_sgd(model.prompt_learner.prompt_parameters(), lr=0.05)
    scheduler = build_lr_scheduler(optimizer, epochs, warmup_epoch=1, warmup_lr=1e-3)
    train = sharded_data.loader(_data(12, 0), batch_size=4, seed=3)  # global batch 4: 2 images per rank
    val = sharded_data.loader(_data(8, 1), batch_size=2, seed=4)  # 4 batches per pass: cycled twice
    search = BilevelSearch(model, train, val, optimizer, scheduler, SearchSettings(epochs=epochs, plot=False),
                           output_dir)
    if interrupt_at is not None:  # every rank dies at the same step, as a killed job would
        loss = search._loss

        def dies(batch, phase):
            if (search.epoch, search.iteration) == interrupt_at and phase.startswith("training"):
                raise Interrupt
            return loss(batch, phase)

        search._loss = dies
    result = search.run()
    return search, result, encoded


def _gumbel_search(clip):
    """A Gumbel search as the Dassl trainer runs one: the supernet built under one seed on every
    process, then each process reseeded with its own (for its augmentations). Returns the mixture
    weights of every forward pass and the final alpha."""
    torch.manual_seed(0)
    model = build_supernet(clip, CLASSNAMES, candidates=(0, 1, 3))
    weights = []
    model.prompt_learner.register_forward_hook(lambda module, args, out: weights.append(
        torch.stack([m.weights.detach().clone() for m in out.text + out.vision if m is not None])))
    optimizer = build_sgd(model.prompt_learner.prompt_parameters(), lr=0.05)
    train = sharded_data.loader(_data(8, 0), batch_size=4, seed=3)
    val = sharded_data.loader(_data(4, 1), batch_size=2, seed=4)
    torch.manual_seed(distributed.rank_seed(11))
    search = BilevelSearch(model, train, val, optimizer, settings=SearchSettings(epochs=1, gumbel=True, plot=False))
    search.run()
    return torch.stack(weights), search.learner.alpha.state_dict()


def _odd_validation_accuracy(clip):
    """The supernet's end-of-search accuracy on 5 validation images (uneven over 2 processes). Alpha
    rests (a learning rate that rounds to a zero step in float32, since 0 is refused as no search: the
    padded alpha steps change nothing), so the one- and two-process supernets are the same, and so
    must their accuracy be."""
    torch.manual_seed(0)
    model = build_supernet(clip, CLASSNAMES, candidates=(0, 1, 3))
    optimizer = build_sgd(model.prompt_learner.prompt_parameters(), lr=0.05)
    train = sharded_data.loader(_data(8, 0), batch_size=4, seed=3)
    val = sharded_data.loader(_data(5, 12), batch_size=2, seed=4)
    settings = SearchSettings(epochs=1, alpha_lr=1e-300, plot=False)
    return BilevelSearch(model, train, val, optimizer, settings=settings).run().val_accuracy


def _scenario(clip_path, out_dir, resume_dir):
    """What both runs compute; only the number of processes differs."""
    clip = load_clip(clip_path)
    search, result, encoded = _search(clip, out_dir)
    torch.manual_seed(0)
    model = build_prompted_clip(clip, CLASSNAMES, PromptConfig.maple(2, 2, 3, 3))  # text prompts: gathered
    train_prompts(model, sharded_data.loader(_data(12, 5), batch_size=4, seed=6),
                  TrainSettings(epochs=2, lr=0.5, warmup_epochs=0), progress=False)
    accuracy = evaluate(model, sharded_data.eval_loader(_data(9, 7), batch_size=4), progress=False)

    with pytest.raises(Interrupt):
        _search(load_clip(clip_path), resume_dir, interrupt_at=(1, 1))
    resumed, _, _ = _search(load_clip(clip_path), resume_dir)  # fresh objects, as in a new process

    gumbel_weights, gumbel_alpha = _gumbel_search(load_clip(clip_path))
    odd_accuracy = _odd_validation_accuracy(load_clip(clip_path))

    inf = _data(8, 8)
    inf.tensors[0][1::2] = float("inf")  # rank 1's images (unshuffled: rank r takes r, r + 2, ...)
    try:
        train_prompts(model, sharded_data.loader(inf, batch_size=4, shuffle=False), TrainSettings(epochs=1),
                      progress=False)
        stopped = ""
    except NonFiniteLossError as err:
        stopped = str(err)
    return {"alpha": search.learner.alpha.state_dict(), "search_prompts": search.learner.state_dict(),
            "config": result.config.to_dict(), "history": result.history.tables, "encoded": encoded,
            "trained": model.prompt_learner.state_dict(), "accuracy": accuracy,
            "resumed": resumed.learner.state_dict(), "stopped": stopped, "gumbel_weights": gumbel_weights,
            "gumbel_alpha": gumbel_alpha, "odd_accuracy": odd_accuracy}


def _worker(rank, port, clip_path, root):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    distributed.init_from_env(use_cuda=False)
    try:
        # Rank 1 is given its own output folder to show that it writes nothing there; resuming
        # needs the folder rank 0 wrote, as in a real run.
        out = os.path.join(root, "search" if rank == 0 else "search_rank1")
        result = _scenario(clip_path, out, os.path.join(root, "resume"))
        torch.save(result, os.path.join(root, f"result{rank}.pt"))
    finally:
        distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tiny_clip_path, tmp_path_factory):
    two = tmp_path_factory.mktemp("two_processes")
    mp.spawn(_worker, args=(_free_port(), tiny_clip_path, str(two)), nprocs=WORLD)
    one = tmp_path_factory.mktemp("one_process")
    reference = _scenario(tiny_clip_path, str(one / "search"), str(one / "resume"))
    ranks = [torch.load(two / f"result{r}.pt", weights_only=False) for r in range(WORLD)]
    return reference, ranks, two


def _close(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5, msg=key)


def test_two_process_search_equals_one_process(runs):
    reference, ranks, _ = runs
    for result in ranks:
        _close(result["alpha"], reference["alpha"])
        _close(result["search_prompts"], reference["search_prompts"])
        assert result["config"]["text"] == reference["config"]["text"]
        assert result["config"]["vision"] == reference["config"]["vision"]
        for branch, tables in reference["history"].items():
            torch.testing.assert_close(torch.tensor(result["history"][branch]), torch.tensor(tables),
                                       rtol=1e-5, atol=1e-5)


def test_class_prompts_are_split_across_processes(runs):
    reference, ranks, _ = runs
    assert set(reference["encoded"]) == {C}
    assert set(ranks[0]["encoded"]) == {3} and set(ranks[1]["encoded"]) == {2}
    assert len(ranks[0]["encoded"]) == len(ranks[1]["encoded"]) == len(reference["encoded"])


def test_two_process_training_and_evaluation_equal_one_process(runs):
    reference, ranks, _ = runs
    for result in ranks:
        _close(result["trained"], reference["trained"])
        assert result["accuracy"] == reference["accuracy"]  # 9 images: 5 evaluated on rank 0, 4 on rank 1


def test_only_rank_0_writes(runs):
    _, _, two = runs
    assert not (two / "search_rank1").exists()
    written = {p.name for p in (two / "search").iterdir()}
    assert {CHECKPOINT_FILE, "searched_config.yaml", "alpha_history.json"} <= written


def test_resumed_two_process_search_continues_exactly(runs):
    reference, ranks, two = runs
    state = torch.load(two / "resume" / CHECKPOINT_FILE, weights_only=True)
    assert isinstance(state["rng"], list) and len(state["rng"]) == WORLD  # each rank's random state
    for result in ranks:
        _close(result["resumed"], result["search_prompts"])
    _close(ranks[0]["resumed"], reference["resumed"])


def test_a_non_finite_loss_on_one_rank_stops_every_rank(runs):
    reference, ranks, _ = runs
    assert "training loss is inf" in reference["stopped"] or "training loss is nan" in reference["stopped"]
    assert "finite here but not in another process" in ranks[0]["stopped"]
    assert "training loss is nan" in ranks[1]["stopped"] or "training loss is inf" in ranks[1]["stopped"]


def test_gumbel_samples_one_architecture_on_every_process(runs):
    """Each process seeded with its own seed after the supernet is built: every forward pass of
    both processes mixes with the same sample, the one-process run's."""
    reference, ranks, _ = runs
    samples = reference["gumbel_weights"]
    assert len(samples) > 2 and not torch.allclose(samples[0], samples[1])  # a new sample each pass
    for result in ranks:
        torch.testing.assert_close(result["gumbel_weights"], samples, rtol=1e-5, atol=1e-6)
        _close(result["gumbel_alpha"], reference["gumbel_alpha"])


def test_validation_accuracy_counts_every_image_once(runs):
    """5 validation images over 2 processes (a distributed sampler pads them to 6): the one-process
    accuracy, which must be neither 0 nor 100 % for padding to be able to show."""
    reference, ranks, _ = runs
    assert 0 < reference["odd_accuracy"] < 100
    assert [result["odd_accuracy"] for result in ranks] == [reference["odd_accuracy"]] * WORLD


# -- in one process ---------------------------------------------------------------------------------
def test_shards_cover_every_item_once_and_differ_by_at_most_one():
    for n in (2, 5, 1000):
        for world in (1, 2, 3, 8):
            if n < world:
                continue
            shards = [distributed.shard_range(n, r, world) for r in range(world)]
            assert [i for s in shards for i in s] == list(range(n))
            assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_global_batch_sizes_must_split_evenly(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    assert sharded_data.per_process_batch(6) == 2
    with pytest.raises(OptionError, match="batch size 4 is global .* into 3 equal shares. On 3 processes use a "
                                          r"multiple of 3 \(6, 9, 12, ...; .* or keep 4 and start 1, 2 or 4 processes"):
        sharded_data.per_process_batch(4)


def test_the_recipe_batches_refused_on_8_gpus_name_what_works(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 8)
    assert sharded_data.per_process_batch(16, "TRAINER.DPL.SEARCH.VAL_BATCH_SIZE") == 2
    with pytest.raises(OptionError, match=r"TRAINER.DPL.SEARCH.BATCH_SIZE 4 is global .* use a multiple of 8 "
                                          r"\(8, 16, 24, ...; .* or keep 4 and start 1, 2 or 4 processes"):
        sharded_data.per_process_batch(4, "TRAINER.DPL.SEARCH.BATCH_SIZE")


def test_more_processes_than_classes_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 8)
    with pytest.raises(ValueError, match="8 processes share 5 classes.*at most 5 processes"):
        distributed.shard(5)


def test_validation_cycling_reshuffles_a_distributed_sampler_every_pass():
    cycler = CyclingIterator(sharded_data.loader(TensorDataset(torch.arange(6)), batch_size=2, seed=0))
    passes = [[int(v) for _ in range(3) for v in next(cycler)[0]] for _ in range(3)]
    assert all(sorted(p) == list(range(6)) for p in passes)
    assert len({tuple(p) for p in passes}) == 3
    state = cycler.state_dict()
    expected = [next(cycler)[0].tolist() for _ in range(4)]
    again = CyclingIterator(sharded_data.loader(TensorDataset(torch.arange(6)), batch_size=2, seed=0))
    again.load_state_dict(state)
    assert [next(again)[0].tolist() for _ in range(4)] == expected
