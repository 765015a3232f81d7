"""benchmarks/search_quality.py on a tiny CLIP: the rows, the rank, the learning-rate choice and the cache."""

import json
import os
import sys

import torch
from torch.utils.data import TensorDataset

from conftest import CLASSNAMES
from dpl_plugin import BackboneSpec

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import search_quality as sq  # noqa: E402

SETTINGS = sq.Settings(train_epochs=1, search_epochs=1, random=2, lrs=(0.01, 0.05))


def tiny_task(seed):
    g = torch.Generator().manual_seed(seed)

    def split(n):
        return TensorDataset(torch.randn(n, 3, 32, 32, generator=g), torch.arange(n) % len(CLASSNAMES))
    return sq.Task(f"tiny/seed{seed}", CLASSNAMES, split(10), split(10), split(15))


def run(clip, output, log):
    return sq.benchmark(clip, tiny_task, ["ivlp"], [1], SETTINGS, str(output), log=log.append)


def test_benchmark_rows_rank_cache_and_resume(tiny_clip, tmp_path):
    log = []
    report = run(tiny_clip, tmp_path, log)
    summary = report["summaries"][0]
    rows = report["runs"]["ivlp"]["1"]["rows"]
    inherited = ["searched (paper), init searched (prefix)", "searched (paper), init guarded (prefix)"]
    form = SETTINGS.insertion
    equal = ["hand design @ DPL cost", "random 1 @ DPL cost", "random 2 @ DPL cost", "all-max @ DPL cost"]
    assert list(rows) == ["zero-shot", "hand design", "searched (paper)", "searched (paper), init random (native)",
                          f"searched (paper), init template ({form})", *inherited, "random 1", "random 2", "all-max",
                          *equal]
    assert [r["row"] for r in summary["table"]] == [
        label for label in rows if label not in ("random 1", "random 2", "random 1 @ DPL cost", "random 2 @ DPL cost")
    ] + ["random (mean)", "random (best)", "random (median)", "random (mean) @ DPL cost", "random (best) @ DPL cost",
         "random (median) @ DPL cost"]
    # cost, counted: 10 training images a train epoch; the 1-epoch search's 3 prompt steps (batches of
    # 4, 4, 2) each after an alpha step on the 10 validation images (one batch of up to 16)
    search_samples = 10 + 3 * 10
    assert report["runs"]["ivlp"]["1"]["searches"]["paper"]["samples"] == search_samples
    assert rows["hand design"]["samples"] == 10 * SETTINGS.train_epochs and rows["zero-shot"]["samples"] == 0
    # the guarded row's probe: the train stage's first epoch (all of it) from each of its 2 starts
    probe_samples = 2 * 10 * SETTINGS.train_epochs
    guarded = rows[inherited[1]]
    assert guarded["samples"] == probe_samples + 10 * SETTINGS.train_epochs
    assert guarded["start"] in ("searched", "template")
    assert all(r["start"] in ("searched", "template") for r in guarded["per_lr"].values())
    dpl_total = search_samples + 10 * SETTINGS.train_epochs + probe_samples  # the dearest DPL pipeline's
    for label in equal:  # trained as many samples as DPL (search + probe + train stage) processed
        assert rows[label]["samples"] == dpl_total and rows[label]["epochs"] == dpl_total // 10
    table = {r["row"]: r for r in summary["table"]}
    assert table["searched (paper)"]["samples"] == [dpl_total - probe_samples]
    assert table[inherited[1]]["samples"] == [dpl_total] and table["hand design"]["cpu_seconds"][0] > 0
    # Kendall tau between the supernet's scores of the random and all-max configurations and their accuracy
    scores = report["runs"]["ivlp"]["1"]["supernet"]["scores"]
    accs = [rows[x]["test_acc"] for x in ("random 1", "random 2", "all-max")]
    assert summary["diagnostics"]["kendall_tau"] == [sq.kendall_tau([(a, -loss) for a, loss in scores], accs)]

    # the verdict at equal total cost, paired per seed, for every DPL row (search + its train stage)
    verdict = {v["row"]: v for v in summary["equal_cost"]}
    assert list(verdict) == [label for label in rows if label.startswith("searched (")]
    pipeline, at_cost = rows[inherited[0]]["test_acc"], [rows[f"random {i} @ DPL cost"]["test_acc"] for i in (1, 2)]
    v = verdict[inherited[0]]
    assert v["minus_hand"] == [pipeline - rows["hand design @ DPL cost"]["test_acc"]]
    assert v["minus_random_mean"] == [pipeline - sum(at_cost) / 2]
    assert v["ranks"] == [1 + sum(a > pipeline for a in at_cost)] and v["of"] == 3
    assert v["samples"] == [dpl_total - probe_samples] and v["cost_samples"] == [dpl_total]
    assert verdict[inherited[1]]["samples"] == [dpl_total]
    assert v["search_over_train_samples"] == [search_samples / (10 * SETTINGS.train_epochs)]
    assert guarded["probe_samples"] == probe_samples  # with the search, against the train stage alone
    assert verdict[inherited[1]]["search_over_train_samples"] == [(search_samples + probe_samples)
                                                                  / (10 * SETTINGS.train_epochs)]
    # CPU: a guarded row's probe counts with its search, against its own train stage's CPU alone
    cpu = report["runs"]["ivlp"]["1"]["searches"]["paper"]["cpu_seconds"]
    assert 0 < guarded["probe_cpu_seconds"] < guarded["cpu_seconds"]
    assert verdict[inherited[1]]["search_over_train_cpu"] == [
        (cpu + guarded["probe_cpu_seconds"]) / (guarded["cpu_seconds"] - guarded["probe_cpu_seconds"])]
    assert v["search_over_train_cpu"] == [cpu / rows[inherited[0]]["cpu_seconds"]]
    # a guarded row cached before its probe's CPU was recorded apart: its ratio is unknown, not guessed
    legacy = {k: x for k, x in guarded.items() if k != "probe_cpu_seconds"}
    assert sq._search_over_train_cpu(report["runs"]["ivlp"]["1"], inherited[1], legacy) is None
    assert sq._mean_ratio([1.0, None]) == "n/a" and sq._mean_ratio([1.0, 2.0]) == "1.50x"
    assert "At equal total cost" in sq.format_design(summary, SETTINGS)
    # the most any selection among the random configurations could gain over the hand design at that cost
    assert summary["ceiling"] == [max(at_cost) - rows["hand design @ DPL cost"]["test_acc"]]
    assert "ceiling of a selection among the 2 random configurations" in sq.format_design(summary, SETTINGS)

    # the configurations: hand design scaled to 3 layers (depth round(9/12 * 3) = 2), samples of the space
    assert rows["hand design"]["config"] == {"text": [2, 2, 0], "vision": [2, 2, 0], "insertion": "native",
                                             "coupled": False}
    space = sq.SearchSpace.of("ivlp", BackboneSpec.of(tiny_clip))
    for label in ("random 1", "random 2", "all-max", "searched (paper)"):
        config = sq.dpl.PromptConfig(**{k: rows[label]["config"][k] for k in ("text", "vision", "coupled")})
        assert space.contains(config) and rows[label]["config"]["insertion"] == "native"
    assert rows["all-max"]["config"]["text"] == [6, 6, 6]

    # the learning rate is the validation's choice, and only the chosen one was evaluated on the test split
    for label, row in rows.items():
        per_lr = row["per_lr"]
        if label == "zero-shot":
            assert list(per_lr) == ["-"] and row["lr"] is None
            continue
        assert set(per_lr) == {"0.01", "0.05"}
        best = max(r["val_acc"] for r in per_lr.values())
        assert row["val_acc"] == best == per_lr[f"{row['lr']:g}"]["val_acc"]
        assert [lr for lr, r in per_lr.items() if "test_acc" in r] == [f"{row['lr']:g}"]

    # the rank of the searched configuration among the random ones
    search = summary["searches"]["paper"]
    searched = rows["searched (paper)"]["test_acc"]
    assert search["ranks"] == [1 + sum(rows[f"random {i}"]["test_acc"] > searched for i in (1, 2))]
    assert search["of"] == 3 and search["minus_hand"] == [searched - rows["hand design"]["test_acc"]]
    confidence = search["confidence"][0]
    assert set(confidence) == {"text", "vision"} and all(n == 3 for _, n in confidence.values())
    markdown = open(tmp_path / "results.md").read()
    assert "rank among 2 random" in markdown and "| hand design" in markdown
    assert os.path.getsize(tmp_path / "search_quality.png") > 1000
    assert json.load(open(tmp_path / "results.json"))["summaries"][0]["table"] == summary["table"]

    # the cache holds every training (per configuration, initialisation and lr) and the search
    cache = json.load(open(tmp_path / "cache.json"))
    assert cache["format"] == sq.CACHE_FORMAT
    kinds = [e["identity"]["kind"] for e in cache["entries"].values()]
    assert kinds.count("search") == 1 and kinds.count("supernet") == 1
    trainings = [e for e in cache["entries"].values() if e["identity"]["kind"] == "training"]
    distinct = {(json.dumps(r["config"]), r["init"], r["epochs"]) for r in rows.values()}
    assert len(trainings) == 1 + 2 * (len(distinct) - 1)  # zero-shot once, every other configuration at 2 lrs
    trained = [line for line in log if "| lr " in line]
    assert len(trained) == len(trainings) and report["new_results"] == len(trainings) + 2  # + search, supernet scores

    # a second call retrains nothing and reports the same
    log.clear()
    again = run(tiny_clip, tmp_path, log)
    assert again["new_results"] == 0 and log == []
    assert again["summaries"] == report["summaries"]

    # a run killed before one training finished redoes that training only, with the same result
    key, entry = next((k, e) for k, e in cache["entries"].items()
                      if e["identity"]["kind"] == "training" and "test_acc" not in e["result"])
    del cache["entries"][key]
    with open(tmp_path / "cache.json", "w") as f:
        json.dump(cache, f)
    resumed = run(tiny_clip, tmp_path, log)
    assert resumed["new_results"] == 1 and len(log) == 1
    redone = json.load(open(tmp_path / "cache.json"))["entries"][key]["result"]
    assert redone["val_acc"] == entry["result"]["val_acc"] and redone["val_loss"] == entry["result"]["val_loss"]
    assert resumed["summaries"] == report["summaries"]


def test_kendall_tau_b_matches_its_definition():
    assert sq.kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0 and sq.kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    # one tie in x: (P - Q) / sqrt((n0 - n1) (n0 - n2)) with P = 2, Q = 0, n0 = 3, n1 = 1, n2 = 0
    assert abs(sq.kendall_tau([1, 1, 2], [1, 2, 3]) - 2 / (2 * 3) ** 0.5) < 1e-12
    assert sq.kendall_tau([1, 1], [1, 2]) is None


def test_hand_designs_are_the_published_ones_scaled_to_the_depth():
    def spec(layers):
        return BackboneSpec("t", layers, 512, 8, 77, 512, layers, 768, 12, 224)
    twelve = {d: sq.hand_design(d, spec(12)) for d in sq.DESIGNS}
    assert twelve["coop"].text == [16] + [0] * 11 and not twelve["coop"].uses("vision")
    assert twelve["vpt"].vision == [8] * 12 and not twelve["vpt"].uses("text")
    assert twelve["ivlp"].text == twelve["ivlp"].vision == [2] * 9 + [0] * 3 and not twelve["ivlp"].coupled
    assert twelve["maple"].text == twelve["maple"].vision == [2] * 9 + [0] * 3 and twelve["maple"].coupled
    assert all(c.insertion == "native" for c in twelve.values())
    assert sq.hand_design("maple", spec(4)).text == [2, 2, 2, 0]
    assert sq.hand_design("vpt", spec(4)).vision == [8] * 4


def test_template_initialisation_applies_where_the_input_length_allows():
    def config(n, insertion="native"):
        return sq.dpl.PromptConfig(text=[n, 1, 0], vision=[0, 0, 0], insertion=insertion)
    assert [sq.effective_init(config(n), "template") for n in (0, 1, 4, 5)] == ["random", "template", "template",
                                                                               "random"]
    assert sq.effective_init(config(5), "searched") == "searched"
    prefix = sq.effective_init(config(2, "prefix"), "template")
    assert prefix == "template"


def test_quick_mode_sets_a_small_budget_unless_told_otherwise():
    args = sq.parse_args(["--quick", "--designs", "maple", "--random", "3"])
    assert args.designs == ["maple"] and args.seeds == [1] and args.random == 3 and args.lrs == [0.006]
    assert args.output == "output/search_quality_quick"
    full = sq.parse_args([])
    assert full.seeds == [1, 2, 3, 4, 5] and full.random == 8 and full.lrs == [0.002, 0.006, 0.02]
