"""Search quality: is the searched configuration better than random ones from the same space?

The sanity check the neural-architecture-search literature asks of every search method, on the
demo task (few-shot Fashion-MNIST rotated by 90 degrees, ``dpl-demo`` CLIP). Per design and seed,
at equal train-stage budget (the same epochs, batch size and batches for every configuration):

* zero-shot CLIP; the design's hand design (depths scaled to the backbone: ``round(9/12 * layers)``
  for IVLP and MaPLe, every layer for VPT, 16 input tokens for CoOp);
* the searched configuration (one search per ``--presets`` entry);
* ``--random`` configurations drawn uniformly from the same search space, and the all-maximum one;
* the searched configuration under each initialisation (``--searched-inits``): random (normal
  0.02), template, the supernet's own prompts (``inherit_prompts``, in the supernet's prefix form) and
  ``guarded``: the supernet's prompts or fresh ones, whichever validates better after the train
  stage's first ``--probe-epochs`` epochs from each (``TRAIN.PROBE_EPOCHS``; its probe is counted in
  its cost and in DPL's cost of the rows trained at it).

Every configuration gets the same insertion form (``--insertion``) and initialisation rule,
``template`` (text input tokens from the word embeddings of "a photo of a" where the input length
allows, as MaPLe and IVLP do; everything else normal 0.02), and a learning rate chosen from
``--lrs`` on the validation split (never the test split): each row's test accuracy is that of the
chosen learning rate, and only that one is evaluated on the test split.

Prints per design: mean ± 95% t-interval over seeds, the searched configuration's rank among the
random ones, per-layer confidence, search time and the discretisation gap (supernet validation
accuracy against the trained configuration's); writes ``results.json``, ``results.md`` and ``search_quality.png`` (test accuracy against prompt tokens).

Resumable: every finished training is cached in ``cache.json`` under ``--output``; a killed run
continues where it stopped.

    python benchmarks/search_quality.py --quick              # all designs, 1 seed, minutes
    python benchmarks/search_quality.py --designs maple      # one design, seeds 1-5
    python benchmarks/search_quality.py --presets paper robust
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import statistics
import sys
import time
import warnings
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import dpl_plugin as dpl  # noqa: E402
from dpl_plugin.runtime.atomic import atomic_write  # noqa: E402
from dpl_plugin.search.stage import search_prompt_lengths  # noqa: E402
from dpl_plugin.runtime.reproducibility import seed_everything  # noqa: E402
from dpl_plugin.search.discretize import confidence_summary, derive_config  # noqa: E402
from dpl_plugin.search.selection import fixed_layers, select, validation_score  # noqa: E402
from dpl_plugin.search.space import SearchSpace  # noqa: E402
from dpl_plugin.prompting.text_inputs import bpe  # noqa: E402
from dpl_plugin.engine.start_probe import probe_starts  # noqa: E402
from dpl_plugin.engine.training import TrainSettings, train_prompts  # noqa: E402
from dpl_plugin.prompting.initialization import inherit_prompts  # noqa: E402
from dpl_plugin.prompting.templates import DEFAULT_CONTEXT  # noqa: E402
from dpl_plugin.runtime.lock import OutputLock  # noqa: E402
from dpl_plugin.search.history import CONFIDENT  # noqa: E402
from dpl_plugin.search.settings import PATH_MODES, fields_of  # noqa: E402
from parse_results import interval  # noqa: E402


DESIGNS = ("coop", "vpt", "ivlp", "maple")
# guarded: the supernet's prompts or fresh ones (template), whichever validates better after the
# train stage's first --probe-epochs epochs from each (dpl_plugin.engine.start_probe)
INITS = ("random", "template", "searched", "guarded")
INHERITING = ("searched", "guarded")  # the inits that need the supernet
GUARD_STARTS = ("searched", "template")  # what the guarded init's probe compares
GUARD_KEYS = ("start", "probe_samples", "probe_cpu_seconds")  # what a guarded row records of its probe
CACHE_FORMAT = "dpl-plugin/search-quality-cache-v1"
# Search options added after that format: at their default they stay out of a search's identity, so
# the searches (and the rows that depend on them) cached before the option existed remain valid.
_ADDED_AFTER_CACHE_V1 = ("nested", "paths")
# A search's selection scores configurations forward only; one forward costs this much of a forward
# and backward (measured on the demo: 0.52 for the VPT and MaPLe hand designs, 1 thread), so its
# images count this much towards the search's samples.
FORWARD_SHARE = 0.5
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(dpl.SearchSettings)}


@dataclass(frozen=True)
class Settings:
    """The benchmark's budget; every configuration of a design and seed trains under the same one."""

    shots: int = 16
    train_epochs: int = 6  # 16 shots: 40 steps per epoch, the first epoch warm-up (the CoOp recipe)
    search_epochs: int = 20
    batch_size: int = 4
    val_batch_size: int = 16  # the search's alpha batches
    lrs: Tuple[float, ...] = (0.002, 0.006, 0.02)
    search_lr: float = 0.02
    # The demo's searches take ~400 alpha steps (ImageNet's: ~320,000). Adam moves a logit by at most
    # its learning rate per step, so the recipe's 0.0035 cannot make a choice here; both presets get
    # this one, and no configuration's training sees it.
    alpha_lr: float = 0.02
    # The official supernet starts vision candidates from N(0, 1) and text ones from U[0, 1): on the
    # 12-layer demo CLIP that leaves the supernet at chance (validation 10% after 10 epochs, against
    # 55% from N(0, 0.02), seed 1, VPT), so the search would rank noise.
    search_init: str = "normal:0.02"
    random: int = 8
    insertion: str = "native"
    presets: Tuple[str, ...] = ("paper",)
    candidates: Tuple[int, ...] = tuple(range(7))
    searched_inits: Tuple[str, ...] = INITS  # extra rows: the searched configuration under each
    # Rows trained as many samples as DPL processed (its search's steps, alpha steps included, plus
    # its train stage): the hand design, the random configurations and the all-maximum one.
    equal_cost: bool = True
    # Other selections from the first preset's supernet (SELECT): extra rows "searched (preset, method)".
    selects: Tuple[str, ...] = ()
    select_samples: int = 64
    # The searches' own selection (SELECT): the configuration of the "searched" rows, inherited ones included.
    select: str = "argmax"
    nested: bool = False  # the searches' NESTED: candidates sharing their tokens
    paths: str = "mixture"  # the searches' PATHS: mixture (DARTS) or single (random search with weight sharing)
    alpha_noise: float = 0.0  # the searches' ALPHA_NOISE (SDARTS-RS)
    beta_decay: float = 0.0  # the searches' BETA_DECAY (beta-DARTS)
    # Extra rows: the hand design trained this many epochs each (where its curve stops rising).
    curve: Tuple[int, ...] = ()
    probe_epochs: int = 5  # the guarded init's probe (TRAIN.PROBE_EPOCHS), twice this many epochs in all


@dataclass
class Task:
    """One seed's data. ``name`` identifies the images in cache keys (change it when they change)."""

    name: str
    classnames: List[str]
    train: object
    val: object
    test: object


# -- configurations ----------------------------------------------------------------------------------
def hand_design(design: str, spec: dpl.BackboneSpec) -> dpl.PromptConfig:
    """The published hand design, depths scaled from ViT-B/16's 12 layers to the backbone's."""
    def scaled(layers):
        return max(1, round(9 / 12 * layers))
    kwargs = {"coop": dict(n_ctx=16), "vpt": dict(n_ctx=8, depth=spec.vision_layers),
              "ivlp": dict(n_text=2, n_vision=2, depth_text=scaled(spec.text_layers),
                           depth_vision=scaled(spec.vision_layers)),
              "maple": dict(n_ctx=2, depth=scaled(min(spec.text_layers, spec.vision_layers)))}[design]
    return dpl.get_design(design).baseline_config(spec, **kwargs)


def random_configs(space: SearchSpace, design: str, seed: int, count: int) -> List[dpl.PromptConfig]:
    """The first ``count`` uniform draws of a generator fixed by (design, seed): raising ``--random``
    keeps the configurations already trained."""
    generator = torch.Generator().manual_seed(zlib.crc32(f"{design}/{seed}".encode()))
    return [space.sample(generator) for _ in range(count)]


def effective_init(config: dpl.PromptConfig, init: str) -> str:
    """``template`` only where it changes something: text input tokens that "a photo of a" has
    enough words for (otherwise the rule falls back to random, as in MaPLe and IVLP)."""
    if init != "template":
        return init
    fits = 0 < config.input_length("text") <= len(bpe(DEFAULT_CONTEXT))
    return "template" if fits else "random"


def init_kwargs(init: str) -> dict:
    """``build_prompted_clip`` arguments of an initialisation (``searched`` starts random, then inherits)."""
    if init != "template":
        return {}  # guarded: the probe builds its starts
    return {"text_init": "template"}


def init_form(init: str, insertion: str) -> str:
    """The insertion form a searched configuration is trained in under ``init``: the benchmark's,
    but the supernet's own (prefix) for inherited prompts."""
    return "prefix" if init in INHERITING else insertion


def tokens(config: dpl.PromptConfig) -> int:
    return sum(config.text) + sum(config.vision)


def config_dict(config: dpl.PromptConfig) -> dict:
    return {"text": list(config.text), "vision": list(config.vision), "insertion": config.insertion,
            "coupled": config.coupled}


# -- cache -------------------------------------------------------------------------------------------
class ResultCache:
    """Finished results keyed by everything that determines them; written atomically after each."""

    def __init__(self, path: str):
        self.path = path
        self.entries: Dict[str, dict] = {}
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    data = json.load(f)
            except json.JSONDecodeError as err:
                raise SystemExit(f"{path} is not valid JSON ({err}); move it away to start over") from None
            if data.get("format") != CACHE_FORMAT:
                raise SystemExit(f"{path} is not a search-quality cache ({CACHE_FORMAT}); use another --output")
            self.entries = data["entries"]

    @staticmethod
    def key(identity: dict) -> str:
        return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]

    def get(self, identity: dict) -> Optional[dict]:
        entry = self.entries.get(self.key(identity))
        return entry["result"] if entry else None

    def put(self, identity: dict, result: dict) -> dict:
        self.entries[self.key(identity)] = {"identity": identity, "result": result}
        with atomic_write(self.path, "w") as f:
            json.dump({"format": CACHE_FORMAT, "entries": self.entries}, f, indent=0)
        return result


def fingerprint(clip_model) -> str:
    """A short hash of the backbone's weights: results of another backbone are other results."""
    digest = hashlib.sha1()
    for name, tensor in sorted(clip_model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


# -- measuring ---------------------------------------------------------------------------------------
@torch.no_grad()
def scores(model, dataset, batch_size: int = 500) -> Tuple[float, float]:
    """Accuracy (%) and mean cross-entropy: the loss breaks accuracy ties on a small validation split."""
    model.eval()
    correct, loss, seen = 0, 0.0, 0
    with model.cached_text_features():
        for images, labels in DataLoader(dataset, batch_size=batch_size):
            logits = model(images.to(model.logit_scale.device)).cpu()
            correct += (logits.argmax(dim=1) == labels).sum().item()
            loss += F.cross_entropy(logits, labels, reduction="sum").item()
            seen += labels.numel()
    return 100.0 * correct / seen, loss / seen


def choose_lr(per_lr: Dict[str, dict]) -> str:
    """Best validation accuracy, then lowest validation loss, then the smallest learning rate."""
    def order(lr):
        return per_lr[lr]["val_acc"], -per_lr[lr]["val_loss"], -float(lr) if lr not in ("-", "None") else 0.0
    return max(per_lr, key=order)


def confidence(history, threshold: float = CONFIDENT) -> Dict[str, List[int]]:
    """Per alpha table: [layers with top probability >= threshold, searched layers]."""
    summary = confidence_summary(history, threshold)
    return {key: [summary.decided[key], summary.layers[key]] for key in summary.layers}


class SearchQuality:
    """Runs (or reads from the cache) every training of one design and seed."""

    def __init__(self, clip_model, settings: Settings, output: str, log: Callable[[str], None] = print):
        self.clip, self.settings, self.output, self.log = clip_model, settings, output, log
        self.spec = dpl.BackboneSpec.of(clip_model)
        self.backbone = fingerprint(clip_model)
        self.cache = ResultCache(os.path.join(output, "cache.json"))
        self.trained = 0  # trainings and searches run by this process (the rest came from the cache)
        self.started = time.perf_counter()

    # -- one training --------------------------------------------------------------------------------
    def _identity(self, task: Task, seed: int, config, init: str, lr, search_id: Optional[str],
                  epochs: Optional[int] = None) -> dict:
        s = self.settings
        probe = {"probe_epochs": self.probe_epochs(epochs)} if init == "guarded" else {}
        return {"kind": "training", "task": task.name, "backbone": self.backbone, "seed": seed,
                "config": config_dict(config), "init": init, "search": search_id, "lr": lr,
                "epochs": epochs or s.train_epochs, "batch_size": s.batch_size, **probe}

    def probe_epochs(self, epochs: Optional[int] = None) -> int:
        return min(self.settings.probe_epochs, epochs or self.settings.train_epochs)

    def _build(self, task: Task, config, init: str, supernet):
        model = dpl.build_prompted_clip(self.clip, task.classnames, config, **init_kwargs(init))
        if init == "searched":
            inherit_prompts(model, supernet.prompt_learner)
        return model

    def _train(self, task: Task, seed: int, config, init: str, lr, supernet, epochs: Optional[int] = None):
        """The trained model, the samples its training and probe processed forward and backward
        (counted), the start it trained from (``guarded``: the probe's choice) and its probe's samples
        and CPU seconds."""
        settings = TrainSettings(epochs=epochs or self.settings.train_epochs, lr=lr or 0.0)
        loader = CountingLoader(DataLoader(task.train, batch_size=self.settings.batch_size, shuffle=True))
        start, probe_samples, probe_cpu = init, 0, 0.0
        if init == "guarded" and lr is not None:
            probe_cpu = time.process_time()
            probe = probe_starts(lambda st: self._build(task, config, effective_init(config, st), supernet),
                                 GUARD_STARTS, loader, DataLoader(task.val, batch_size=500), settings,
                                 self.probe_epochs(epochs), seed=seed)
            start, probe_samples, probe_cpu = probe.chosen, probe.samples, time.process_time() - probe_cpu
        seed_everything(seed)  # every configuration of a seed starts from the same random state
        model = self._build(task, config, effective_init(config, start), supernet)
        if lr is not None:
            train_prompts(model, loader, settings, progress=False)
        return model, loader.samples, start, probe_samples, probe_cpu

    def row(self, task: Task, seed: int, label: str, config, init: str, design: str,
            search_id: Optional[str] = None, supernet=None, epochs: Optional[int] = None) -> dict:
        """Train ``config`` at every learning rate of the grid, keep the one the validation split
        chooses and evaluate only that one on the test split. Every result is cached as it finishes."""
        init = effective_init(config, init)
        lrs = list(self.settings.lrs) if tokens(config) else [None]  # no prompts: nothing to train
        identities, per_lr, models = {}, {}, {}
        for lr in lrs:
            key = "-" if lr is None else f"{lr:g}"
            identities[key] = self._identity(task, seed, config, init, lr, search_id if init in INHERITING else None,
                                             epochs)
            per_lr[key] = self.cache.get(identities[key])
            if per_lr[key] is None:
                start, cpu = time.perf_counter(), time.process_time()
                models[key], samples, begun, probe_samples, probe_cpu = self._train(task, seed, config, init, lr,
                                                                                    supernet, epochs)
                cpu = time.process_time() - cpu
                val_acc, val_loss = scores(models[key], task.val)
                per_lr[key] = self.cache.put(identities[key], {
                    "val_acc": val_acc, "val_loss": val_loss, "seconds": round(time.perf_counter() - start, 2),
                    "samples": samples, "cpu_seconds": round(cpu, 2),
                    **({"start": begun, "probe_samples": probe_samples, "probe_cpu_seconds": round(probe_cpu, 2)}
                       if init == "guarded" else {})})
                self.trained += 1
                self.log(f"{design} seed {seed} | {label} | lr {key}: val {val_acc:.1f}% "
                         f"({per_lr[key]['seconds']:.0f} s; {self._elapsed()})")
        chosen = choose_lr(per_lr)
        if "test_acc" not in per_lr[chosen]:
            lr = lrs[list(per_lr).index(chosen)]
            model = models.get(chosen) or self._train(task, seed, config, init, lr, supernet, epochs)[0]  # killed
            test = {**per_lr[chosen], "test_acc": scores(model, task.test)[0]}
            per_lr[chosen] = self.cache.put(identities[chosen], test)
            choice = f"lr {chosen} chosen on validation, " if len(lrs) > 1 else ""
            self.log(f"{design} seed {seed} | {label}: {choice}test {per_lr[chosen]['test_acc']:.1f}%")
        # cost: the chosen learning rate's training (the grid's other trainings are the protocol's, alike for all)
        return {"label": label, "config": config_dict(config), "tokens": tokens(config), "init": init,
                "lr": None if chosen == "-" else float(chosen), "epochs": epochs or self.settings.train_epochs,
                "samples": per_lr[chosen].get("samples", 0), "cpu_seconds": per_lr[chosen].get("cpu_seconds"),
                **{k: per_lr[chosen][k] for k in ("val_acc", "val_loss", "test_acc")}, "per_lr": per_lr,
                **({k: per_lr[chosen].get(k) for k in GUARD_KEYS} if init == "guarded" else {})}

    def _elapsed(self) -> str:
        return f"{self.trained} run, {(time.perf_counter() - self.started) / 60:.1f} min"

    # -- one search ----------------------------------------------------------------------------------
    def _search_identity(self, task: Task, design: str, seed: int, preset: str) -> dict:
        s = self.settings
        return {"kind": "search", "task": task.name, "backbone": self.backbone, "design": design, "seed": seed,
                "preset": preset, "epochs": s.search_epochs, "lr": s.search_lr, "candidates": list(s.candidates),
                "init": s.search_init,
                "batch_size": s.batch_size, "val_batch_size": s.val_batch_size,
                # what the preset means today: a changed preset is another search (the setup options,
                # lr, init and batch sizes, are the keys above)
                "settings": {k: v for k, v in dataclasses.asdict(self._search_settings(preset)).items()
                             if k not in fields_of("setup") + fields_of("cosmetic")
                             and not (k in _ADDED_AFTER_CACHE_V1 and v == _DEFAULTS[k])}}

    def _search_settings(self, preset: str) -> dpl.SearchSettings:
        s = self.settings
        return dpl.SearchSettings(epochs=s.search_epochs, preset=preset, alpha_lr=s.alpha_lr, lr=s.search_lr,
                                  text_init=s.search_init, vision_init=s.search_init, select=s.select, plot=False,
                                  nested=s.nested, paths=s.paths, alpha_noise=s.alpha_noise,
                                  beta_decay=s.beta_decay,
                                  # the selects' sample count is another search only where the search samples
                                  **({"select_samples": s.select_samples} if s.select == "sampled" else {})
                                  ).resolved()

    def search(self, task: Task, design: str, seed: int, preset: str, need_supernet: bool):
        """The search's summary (cached) and, when asked for, its supernet (re-read from its folder)."""
        identity = self._search_identity(task, design, seed, preset)
        cached = self.cache.get(identity)
        if cached is not None and not need_supernet:
            return cached, None
        s = self.settings
        folder = os.path.join(self.output, "searches", f"{design}-seed{seed}-{preset}-{ResultCache.key(identity)[:8]}")
        start, cpu = time.perf_counter(), time.process_time()
        seed_everything(seed)
        quiet = io.StringIO()  # the search's per-epoch progress: one log line per search instead
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            result = search_prompt_lengths(
                self.clip, task.classnames, DataLoader(task.train, batch_size=s.batch_size, shuffle=True),
                DataLoader(task.val, batch_size=s.val_batch_size, shuffle=True), design=design,
                candidates=s.candidates, settings=self._search_settings(preset), output_dir=folder,
                provenance={"task": task.name, "seed": seed, "benchmark": "search_quality"})
        supernet = result.supernet
        if cached is not None:
            return cached, supernet
        val_accuracy = result.val_accuracy
        summary = {"config": config_dict(result.config), "confidence": confidence(result.history),
                   "seconds": round(time.perf_counter() - start, 1), "val_accuracy": val_accuracy,
                   "id": ResultCache.key(identity), "samples": search_samples(result),
                   "cpu_seconds": round(time.process_time() - cpu, 1), "epochs_run": result.epochs_run}
        self.cache.put(identity, summary)
        self.trained += 1
        decided = sum(d for d, _ in summary["confidence"].values())
        layers = sum(n for _, n in summary["confidence"].values())
        self.log(f"{design} seed {seed} | search ({preset}): text {result.config.text} vision {result.config.vision}, "
                 f"{decided}/{layers} layers decided, supernet val "
                 f"{'n/a' if val_accuracy is None else f'{val_accuracy:.1f}%'} ({summary['seconds']:.0f} s; "
                 f"{self._elapsed()})")
        return summary, supernet

    # -- one design and seed ---------------------------------------------------------------------------
    def run(self, task: Task, design: str, seed: int) -> dict:
        s = self.settings
        main = lambda c: c.with_insertion(s.insertion)  # noqa: E731  every row's insertion form
        space = SearchSpace.of(design, self.spec, s.candidates)
        rows = [self.row(task, seed, "zero-shot", dpl.PromptConfig.zeros(self.spec.text_layers,
                                                                          self.spec.vision_layers), "random", design),
                self.row(task, seed, "hand design", main(hand_design(design, self.spec)), "template", design)]
        searches = {}
        for preset in s.presets:
            rows += self._searched_rows(task, design, seed, preset, main, searches)
        randoms = random_configs(space, design, seed, s.random)
        for i, config in enumerate(randoms):
            rows.append(self.row(task, seed, f"random {i + 1}", main(config), "template", design))
        rows.append(self.row(task, seed, "all-max", main(space.all_max()), "template", design))
        hand = main(hand_design(design, self.spec))
        for epochs in s.curve:
            rows.append(self.row(task, seed, f"hand design, {epochs} epochs", hand, "template", design, epochs=epochs))
        extras = {}
        if s.presets and (s.selects or s.random):
            extras = self._supernet_extras(task, design, seed, s.presets[0], randoms + [space.all_max()])
            for method, c in extras["selections"].items():
                config = dpl.PromptConfig(text=c["text"], vision=c["vision"], coupled=c["coupled"])
                rows.append(self.row(task, seed, f"searched ({s.presets[0]}, {method})", main(config), "template",
                                     design))
        if s.equal_cost and s.presets and searches[s.presets[0]].get("samples") is None:
            self.log(f"{design} seed {seed}: its search was cached before searches counted their samples: "
                     f"no rows at DPL's cost (use another --output to search again)")
        elif s.equal_cost and s.presets:
            epochs = self.equal_cost_epochs(task, searches[s.presets[0]])
            for label, config in [("hand design", hand)] + [(f"random {i + 1}", main(c)) for i, c in enumerate(randoms)] \
                    + [("all-max", main(space.all_max()))]:
                rows.append(self.row(task, seed, f"{label} @ DPL cost", config, "template", design, epochs=epochs))
        return {"rows": {r["label"]: r for r in rows}, "searches": searches, "supernet": extras}

    def equal_cost_epochs(self, task: Task, search: dict) -> int:
        """Train-stage epochs plus the search's samples in whole epochs of the training split: as many
        samples as DPL (search + train stage) processed forward and backward, rounded up; with a
        guarded row, its probe's too (the dearest DPL pipeline of the run)."""
        guarded = "guarded" in self.settings.searched_inits
        probe = len(GUARD_STARTS) * self.probe_epochs() * len(task.train) if guarded else 0
        return self.settings.train_epochs + math.ceil((search["samples"] + probe) / len(task.train))

    def _supernet_extras(self, task: Task, design: str, seed: int, preset: str, configs) -> dict:
        """The trained supernet's validation scores of ``configs`` (their lengths fixed, prompts shared)
        and the configurations the other selections choose from it (cached)."""
        s = self.settings
        search_identity = self._search_identity(task, design, seed, preset)
        identity = {"kind": "supernet", "search": ResultCache.key(search_identity),
                    "configs": [config_dict(c) for c in configs], "selects": list(s.selects),
                    "select_samples": s.select_samples}
        cached = self.cache.get(identity)
        if cached is not None:
            return cached
        _, supernet = self.search(task, design, seed, preset, need_supernet=True)
        learner = supernet.prompt_learner
        val = DataLoader(task.val, batch_size=500)
        out = {"scores": [], "selections": {}, "selection_cost": {}}
        for config in configs:
            with fixed_layers(learner, choice_of(learner, config)):
                score, _ = validation_score(supernet, val)
            out["scores"].append([score.accuracy, score.loss])
        for method in s.selects:
            start = time.process_time()
            chosen = select(supernet, val, method, samples=s.select_samples, source="alpha",
                            generator=torch.Generator().manual_seed(seed))
            config = derive_config(learner, choice=chosen.choice)
            out["selections"][method] = config_dict(config)
            out["selection_cost"][method] = {"samples": chosen.samples, "scored": chosen.scored,
                                             "cpu_seconds": round(time.process_time() - start, 1)}
            self.log(f"{design} seed {seed} | select {method}: text {config.text} vision {config.vision} "
                     f"({chosen.scored} supernet evaluations)")
        self.trained += 1
        return self.cache.put(identity, out)

    def _searched_rows(self, task, design, seed, preset, main, searches) -> List[dict]:
        s = self.settings
        extra = [(init, init_form(init, s.insertion)) for init in s.searched_inits]
        identity = self._search_identity(task, design, seed, preset)
        summary = self.cache.get(identity)
        need_supernet = summary is None or any(
            not self._cached_row(task, seed, _searched_config(summary).with_insertion(form), init, summary["id"])
            for init, form in extra if init in INHERITING)
        summary, supernet = self.search(task, design, seed, preset, need_supernet)
        searches[preset] = summary
        config = _searched_config(summary)
        name = f"searched ({preset})"
        rows = [self.row(task, seed, name, main(config), "template", design)]
        for init, form in extra:
            label = f"{name}, init {init} ({form})"
            rows.append(self.row(task, seed, label, config.with_insertion(form), init, design, summary["id"], supernet))
        return rows

    def _cached_row(self, task, seed, config, init, search_id) -> bool:
        """Whether :meth:`row` would find everything in the cache (then it needs no supernet)."""
        lrs = list(self.settings.lrs) if tokens(config) else [None]
        init = effective_init(config, init)
        per_lr = {str(lr): self.cache.get(self._identity(task, seed, config, init, lr, search_id)) for lr in lrs}
        return all(per_lr.values()) and "test_acc" in per_lr[choose_lr(per_lr)]


def search_samples(result) -> int:
    """A search's cost in images through forward and backward: its steps', plus its selection's
    forward-only scoring at :data:`FORWARD_SHARE` each (none for argmax)."""
    scored = result.selection.samples if result.selection is not None else 0
    return result.samples + math.ceil(FORWARD_SHARE * scored)


class CountingLoader:
    """A loader that counts the samples it yields (what a training processed forward and backward)."""

    def __init__(self, loader):
        self.loader, self.samples = loader, 0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            self.samples += len(batch[1])
            yield batch


def choice_of(learner, config: dpl.PromptConfig) -> Dict[str, List[int]]:
    """``config``'s lengths as the supernet's candidate indices, per alpha table."""
    out = {}
    for key, table in learner.alpha.tables.items():
        lengths = config.lengths("text" if key == "coupled" else key)[: table.shape[0]]
        out[key] = [learner.candidates.index(n) for n in lengths]
    return out


def kendall_tau(x: Sequence, y: Sequence) -> Optional[float]:
    """Kendall's tau-b (ties in either ranking handled); None with fewer than 2 distinct pairs."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx = (x[i] > x[j]) - (x[i] < x[j])
            dy = (y[i] > y[j]) - (y[i] < y[j])
            if dx and dy:
                concordant += dx == dy
                discordant += dx != dy
            elif dx:
                ties_y += 1
            elif dy:
                ties_x += 1
    n = concordant + discordant
    denominator = math.sqrt((n + ties_x) * (n + ties_y))
    return (concordant - discordant) / denominator if denominator else None


def _searched_config(summary: dict) -> dpl.PromptConfig:
    c = summary["config"]
    return dpl.PromptConfig(text=c["text"], vision=c["vision"], insertion=c["insertion"], coupled=c["coupled"])


# -- summaries ---------------------------------------------------------------------------------------
def _mean_ratio(values: Sequence[Optional[float]]) -> str:
    """The mean of per-seed ratios, or n/a where a seed's is unknown (never a mean of the others)."""
    return "n/a" if not values or None in values else f"{statistics.mean(values):.2f}x"


def mean_ci(values: Sequence[float]) -> str:
    if len(values) < 2:
        return f"{statistics.mean(values):.1f}"
    return f"{statistics.mean(values):.1f} ± {interval(list(values), student_t=True):.1f}"


def top_quarter_count(ranks: Sequence[int], others: int) -> int:
    """How many of ``ranks`` (1 = best, among ``others`` + 1) fall in the top quarter of the others."""
    return sum((r - 1) <= others / 4 for r in ranks)


def rank_among(value: float, others: Sequence[float]) -> int:
    """1 + the number of random configurations strictly better (ties count in the searched one's favour)."""
    return 1 + sum(o > value for o in others)


def summarise_design(design: str, per_seed: Dict[int, dict], settings: Settings) -> dict:
    """Table rows (mean and interval over seeds), ranks, confidence, search time and discretisation gap."""
    seeds = sorted(per_seed)
    first = per_seed[seeds[0]]["rows"]
    fixed = [label for label in first if not _is_random(label)]
    table = []
    for label in fixed:
        rows = [per_seed[s]["rows"][label] for s in seeds]
        table.append({"row": label, "test": [r["test_acc"] for r in rows], "tokens": rows[0]["tokens"],
                      "lrs": [r["lr"] for r in rows], "epochs": rows[0].get("epochs"),
                      "samples": [r.get("samples", 0) + _search_cost(per_seed[s], label, "samples")
                                  for s, r in zip(seeds, rows)],
                      "cpu_seconds": [(r.get("cpu_seconds") or 0) + _search_cost(per_seed[s], label, "cpu_seconds")
                                      for s, r in zip(seeds, rows)]})
    randoms = {s: _random_rows(per_seed[s]["rows"], "") for s in seeds}
    equal = {s: _random_rows(per_seed[s]["rows"], " @ DPL cost") for s in seeds}
    for suffix, accs in (("", randoms), (" @ DPL cost", equal)):
        if settings.random and all(accs.values()):
            for name, fn in (("random (mean)", statistics.mean), ("random (best)", max),
                             ("random (median)", statistics.median)):
                table.append({"row": name + suffix, "test": [fn([r["test_acc"] for r in accs[s]]) for s in seeds],
                              "tokens": None, "lrs": None, "epochs": accs[seeds[0]][0].get("epochs"),
                              "samples": [statistics.mean(r.get("samples", 0) for r in accs[s]) for s in seeds],
                              "cpu_seconds": [statistics.mean(r.get("cpu_seconds") or 0 for r in accs[s])
                                              for s in seeds]})
    diagnostics = _diagnostics(per_seed, seeds, settings)
    randoms = {s: [r["test_acc"] for r in randoms[s]] for s in seeds}
    searches = {}
    for preset in settings.presets:
        label = f"searched ({preset})"
        accs = {s: per_seed[s]["rows"][label]["test_acc"] for s in seeds}
        ranks = [rank_among(accs[s], randoms[s]) for s in seeds]
        summaries = [per_seed[s]["searches"][preset] for s in seeds]
        decided = [sum(d for d, _ in x["confidence"].values()) / max(sum(n for _, n in x["confidence"].values()), 1)
                   for x in summaries]
        supernet = [x["val_accuracy"] for x in summaries]
        searches[preset] = {
            "ranks": ranks, "of": settings.random + 1,
            "top_quarter": top_quarter_count(ranks, settings.random),
            "minus_hand": [accs[s] - per_seed[s]["rows"]["hand design"]["test_acc"] for s in seeds],
            "confidence": [x["confidence"] for x in summaries], "decided_fraction": decided,
            "seconds": [x["seconds"] for x in summaries], "supernet_val": supernet,
            "trained_val": [per_seed[s]["rows"][label]["val_acc"] for s in seeds],
            "trained_test": list(accs.values()), "configs": [x["config"] for x in summaries]}
    return {"design": design, "seeds": seeds, "table": table, "searches": searches, "diagnostics": diagnostics,
            "equal_cost": _equal_cost_verdict(per_seed, seeds), "ceiling": _selection_ceiling(per_seed, seeds),
            "points": _points(per_seed)}


def _selection_ceiling(per_seed: Dict[int, dict], seeds: List[int]) -> Optional[List[float]]:
    """Per seed, the best random configuration trained at DPL's cost minus the hand design trained as
    long: the most a DPL row could gain over the hand design at equal cost if its choice were the
    best of these draws and its train stage were worth as much as training those lengths the whole
    budget (perfect inheritance). None without rows at DPL's cost."""
    if "hand design @ DPL cost" not in per_seed[seeds[0]]["rows"]:
        return None
    best = {s: [r["test_acc"] for r in _random_rows(per_seed[s]["rows"], " @ DPL cost")] for s in seeds}
    if not all(best.values()):
        return None
    return [max(best[s]) - per_seed[s]["rows"]["hand design @ DPL cost"]["test_acc"] for s in seeds]


def _equal_cost_verdict(per_seed: Dict[int, dict], seeds: List[int]) -> List[dict]:
    """Every DPL row (a search plus its train stage) against the rows trained as many samples as the
    first preset's dearest DPL pipeline processed (with a guarded row: its probe included; the other
    rows used less): paired per seed with the hand design and the mean of the
    random configurations at that cost, its rank among those random configurations, and what its
    search cost against its own train stage."""
    first = per_seed[seeds[0]]["rows"]
    if "hand design @ DPL cost" not in first:
        return []
    out = []
    for label in (x for x in first if x.startswith("searched (")):
        rows = {s: per_seed[s]["rows"][label] for s in seeds}
        search = {s: _search_cost(per_seed[s], label, "samples") for s in seeds}
        at_cost = {s: [r["test_acc"] for r in _random_rows(per_seed[s]["rows"], " @ DPL cost")] for s in seeds}
        ranks = [rank_among(rows[s]["test_acc"], at_cost[s]) for s in seeds]
        out.append({
            "row": label,
            "minus_hand": [rows[s]["test_acc"] - per_seed[s]["rows"]["hand design @ DPL cost"]["test_acc"]
                           for s in seeds],
            "minus_random_mean": [rows[s]["test_acc"] - statistics.mean(at_cost[s]) for s in seeds
                                  if at_cost[s]],
            "ranks": ranks, "of": len(at_cost[seeds[0]]) + 1,
            "top_quarter": top_quarter_count(ranks, len(at_cost[seeds[0]])),
            "samples": [search[s] + rows[s].get("samples", 0) for s in seeds],
            "cost_samples": [per_seed[s]["rows"]["hand design @ DPL cost"].get("samples", 0) for s in seeds],
            # a guarded row's probe counts with its search, against the train stage alone
            "search_over_train_samples": [(search[s] + (rows[s].get("probe_samples") or 0))
                                          / max(rows[s].get("samples", 0) - (rows[s].get("probe_samples") or 0), 1)
                                          for s in seeds],
            "search_over_train_cpu": [_search_over_train_cpu(per_seed[s], label, rows[s]) for s in seeds]})
    return out


def _search_over_train_cpu(run: dict, label: str, row: dict) -> Optional[float]:
    """CPU of the search (and of a guarded row's probe) over its train stage's; None for a guarded
    row cached before its probe's CPU was recorded apart (its train stage's CPU is unknown)."""
    probe = row.get("probe_cpu_seconds", 0.0 if row.get("probe_samples") is None else None)
    if probe is None:
        return None
    return (_search_cost(run, label, "cpu_seconds") + probe) / max((row.get("cpu_seconds") or 0) - probe, 1e-9)


def _is_random(label: str) -> bool:
    return label.startswith("random ") and label.split(" ")[1].isdigit()


def _random_rows(rows: Dict[str, dict], suffix: str) -> List[dict]:
    return [r for label, r in rows.items()
            if label.endswith(suffix) and _is_random(label[: len(label) - len(suffix)] if suffix else label)
            and (suffix or "@" not in label)]


def _search_cost(run: dict, label: str, key: str) -> float:
    """A searched row's search cost (its preset's search; a selection's supernet evaluations are
    forward only and reported apart)."""
    if not label.startswith("searched ("):
        return 0
    preset = label[len("searched ("):].split(")")[0].split(",")[0]
    return run["searches"].get(preset, {}).get(key) or 0


def _diagnostics(per_seed: Dict[int, dict], seeds: List[int], settings: Settings) -> dict:
    """Kendall tau (supernet score vs stand-alone test accuracy of the random and all-max
    configurations), the spread of the random configurations against seed noise."""
    taus = []
    for seed in seeds:
        run = per_seed[seed]
        scores = (run.get("supernet") or {}).get("scores")
        labels = [f"random {i + 1}" for i in range(settings.random)] + ["all-max"]
        if scores and len(scores) == len(labels):
            tau = kendall_tau([(a, -loss) for a, loss in scores], [run["rows"][x]["test_acc"] for x in labels])
            taus.append(tau)
    spreads = [statistics.stdev(r["test_acc"] for r in _random_rows(per_seed[s]["rows"], ""))
               for s in seeds if len(_random_rows(per_seed[s]["rows"], "")) > 1]
    hand = [per_seed[s]["rows"]["hand design"]["test_acc"] for s in seeds]
    return {"kendall_tau": taus, "random_spread": statistics.mean(spreads) if spreads else None,
            "seed_noise": statistics.stdev(hand) if len(hand) > 1 else None,
            "selection_cost": [(per_seed[s].get("supernet") or {}).get("selection_cost") for s in seeds]}


def _points(per_seed: Dict[int, dict]) -> List[dict]:
    """One point per configuration and seed for the accuracy-tokens plot; ``kind`` picks the marker."""
    def kind(label):
        if "@" in label:
            return "other"
        if _is_random(label):
            return "random"
        return "other" if ", init" in label else label  # the searched one under another init: not plotted
    return [{"seed": seed, "label": label, "kind": kind(label), "tokens": r["tokens"], "test_acc": r["test_acc"]}
            for seed, run in per_seed.items() for label, r in run["rows"].items()]


def format_design(summary: dict, settings: Settings) -> str:
    seeds = summary["seeds"]
    width = max(len(r["row"]) for r in summary["table"]) + 2
    lines = [f"## {summary['design']} (seeds {', '.join(map(str, seeds))})", "",
             f"| {'configuration':<{width}}| test acc (mean ± 95%) | per seed | tokens | lr (per seed) | "
             f"epochs | samples fwd+bwd (incl. search) | CPU s |",
             f"|{'-' * (width + 1)}|---|---|---|---|---|---|---|"]
    for r in summary["table"]:
        lrs = "" if r["lrs"] is None else ", ".join("-" if lr is None else f"{lr:g}" for lr in r["lrs"])
        samples = statistics.mean(r.get("samples") or [0])
        cpu = statistics.mean(r.get("cpu_seconds") or [0])
        lines.append(f"| {r['row']:<{width}}| {mean_ci(r['test'])} | {', '.join(f'{a:.1f}' for a in r['test'])} | "
                     f"{'' if r['tokens'] is None else r['tokens']} | {lrs} | {r.get('epochs') or ''} | "
                     f"{samples:,.0f} | {cpu:.0f} |")
    lines.append("")
    d = summary.get("diagnostics") or {}
    taus = [t for t in d.get("kendall_tau", []) if t is not None]
    if d.get("kendall_tau"):
        lines.append(f"- Kendall tau, supernet validation score vs stand-alone test accuracy of the random and "
                     f"all-max configurations: {', '.join('n/a' if t is None else f'{t:+.2f}' for t in d['kendall_tau'])}"
                     f" (mean {statistics.mean(taus) if taus else float('nan'):+.2f})")
    spread, noise = d.get("random_spread"), d.get("seed_noise")
    lines.append(f"- spread of stand-alone test accuracy across random configurations (std within a seed): "
                 f"{'n/a' if spread is None else f'{spread:.1f}'}; seed noise (std of the hand design over seeds): "
                 f"{'n/a' if noise is None else f'{noise:.1f}'} points")
    for cost in d.get("selection_cost") or []:
        if cost:
            lines.append("- selection cost (forward only): " + "; ".join(
                f"{m} {c['scored']} supernet evaluations, {c['samples']:,} images, {c['cpu_seconds']:.0f} CPU s"
                for m, c in cost.items()))
    verdict = summary.get("equal_cost") or []
    if verdict:
        lines += ["", f"At equal total cost (every row below against the hand design and the random configurations "
                      f"trained as many samples as the first preset's search + train stage, plus the guarded "
                      f"row's probe where there is one, "
                      f"{statistics.mean(verdict[0]['cost_samples']):,.0f}):", "",
                  "| DPL row | samples | minus hand design @ DPL cost | minus random mean @ DPL cost | "
                  "rank among random @ DPL cost (top quarter) | search / train stage (samples, CPU) |",
                  "|---|---|---|---|---|---|"]
        for v in verdict:
            lines.append(
                f"| {v['row']} | {statistics.mean(v['samples']):,.0f} | {mean_ci(v['minus_hand'])} | "
                f"{mean_ci(v['minus_random_mean']) if v['minus_random_mean'] else 'n/a'} | "
                f"{statistics.mean(v['ranks']):.1f} of {v['of']} ({v['top_quarter']} of {len(seeds)} seeds) | "
                f"{statistics.mean(v['search_over_train_samples']):.2f}x, "
                f"{_mean_ratio(v['search_over_train_cpu'])} |")
        ceiling = summary.get("ceiling")
        if ceiling:
            lines += ["", f"- ceiling of a selection among the {settings.random} random configurations: the best of "
                          f"them at DPL cost minus the hand design at DPL cost, {mean_ci(ceiling)} points (what a "
                          f"perfect choice among them with inherited prompts worth the whole budget would gain)"]
        lines.append("")
    for preset, x in summary["searches"].items():
        diff = x["minus_hand"]
        sup = [v for v in x["supernet_val"] if v is not None]
        gap = (f"supernet val {statistics.mean(sup):.1f}% vs trained val {statistics.mean(x['trained_val']):.1f}% "
               f"(test {statistics.mean(x['trained_test']):.1f}%)" if sup else "supernet val n/a")
        per_table = "; ".join(", ".join(f"{k} {d}/{n}" for k, (d, n) in c.items()) for c in x["confidence"])
        lines += [
            f"- searched ({preset}): rank among {settings.random} random (1 = best of {x['of']}): "
            f"{', '.join(map(str, x['ranks']))} (mean {statistics.mean(x['ranks']):.1f}; top quarter in "
            f"{x['top_quarter']} of {len(seeds)} seeds); minus hand design {mean_ci(diff)} points",
            f"  confident layers (top probability >= {CONFIDENT}): {statistics.mean(x['decided_fraction']):.0%} "
            f"[{per_table}]; search {statistics.mean(x['seconds']):.0f} s; discretisation: {gap}",
        ]
        for seed, c in zip(seeds, x["configs"]):
            lines.append(f"  seed {seed}: text {c['text']} vision {c['vision']}")
    return "\n".join(lines)


def plot(summaries: List[dict], path: str) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    style = {"random": dict(marker="o", color="0.6", s=18, label="random"),
             "all-max": dict(marker="s", color="black", s=28, label="all-max"),
             "hand design": dict(marker="*", color="tab:red", s=110, label="hand design")}
    searched = sorted({p["kind"] for s in summaries for p in s["points"] if p["kind"].startswith("searched")})
    for kind, color in zip(searched, ("tab:blue", "tab:green", "tab:purple", "tab:orange")):
        style[kind] = dict(marker="D", color=color, s=40, label=kind)
    fig, axes = plt.subplots(1, len(summaries), figsize=(4.2 * len(summaries), 3.6), squeeze=False)
    for ax, summary in zip(axes[0], summaries):
        for kind, kw in style.items():
            pts = [p for p in summary["points"] if p["kind"] == kind]
            if pts:
                ax.scatter([p["tokens"] for p in pts], [p["test_acc"] for p in pts], **kw)
        zero = [p["test_acc"] for p in summary["points"] if p["kind"] == "zero-shot"]
        ax.axhline(statistics.mean(zero), color="0.3", linestyle="--", linewidth=1, label="zero-shot")
        ax.set_title(summary["design"])
        ax.set_xlabel("prompt tokens (all layers and branches)")
        ax.set_ylabel("test accuracy (%)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- the whole benchmark -----------------------------------------------------------------------------
def benchmark(clip_model, task_for_seed: Callable[[int], Task], designs: Sequence[str], seeds: Sequence[int],
              settings: Settings, output: str, log: Callable[[str], None] = print) -> dict:
    """Every design and seed (cached), then the tables, ``results.json``, ``results.md`` and the plot.
    One run per ``output`` at a time (a second one is refused): they would overwrite each other's cache."""
    with OutputLock(output):
        return _benchmark(clip_model, task_for_seed, designs, seeds, settings, output, log)


def _benchmark(clip_model, task_for_seed, designs, seeds, settings, output, log) -> dict:
    bench = SearchQuality(clip_model, settings, output, log)
    runs = {design: {} for design in designs}
    for seed in seeds:
        task = task_for_seed(seed)
        for design in designs:
            runs[design][seed] = bench.run(task, design, seed)
    summaries = [summarise_design(design, runs[design], settings) for design in designs]
    text = "\n\n".join(format_design(s, settings) for s in summaries)
    report = {"settings": dataclasses.asdict(settings), "designs": list(designs), "seeds": list(seeds),
              "summaries": summaries, "runs": {d: {str(s): r for s, r in v.items()} for d, v in runs.items()},
              "new_results": bench.trained, "markdown": text}
    os.makedirs(output, exist_ok=True)
    with atomic_write(os.path.join(output, "results.json"), "w") as f:
        json.dump(report, f, indent=1)
    with atomic_write(os.path.join(output, "results.md"), "w") as f:
        f.write(f"# Search quality\n\nSettings: {json.dumps(dataclasses.asdict(settings))}\n\n{text}\n")
    report["plot"] = plot(summaries, os.path.join(output, "search_quality.png"))
    return report


def demo_task(shots: int, seed: int, shift: str, test_images: Optional[int] = None,
              val_shots: Optional[int] = None) -> Task:
    """The demo task's splits for ``seed``; ``test_images``: the first of the (randomly drawn) test set;
    ``val_shots``: validation images per class (default: the demo's, ``min(shots, 4)``)."""
    from dpl_plugin.demo.task import as_datasets, demo_splits
    splits = demo_splits(shots, seed, shift, val_shots=val_shots)
    train, val, test = as_datasets(splits)
    if test_images is not None and test_images < len(test):
        test = torch.utils.data.Subset(test, range(test_images))
    val_name = "" if val_shots is None else f"/val{val_shots}"  # the default keeps the earlier runs' cache
    return Task(f"demo/fashion-mnist/{shift}/{shots}shots{val_name}/seed{seed}/test{len(test)}", splits.classnames,
                train, val, test)


def estimate(clip_model, task: Task, designs, seeds, settings: Settings) -> str:
    """Rough total time from three timed training steps of a mid-length configuration and one
    evaluation of 200 images (a search iteration counts as five training steps: 16 + 4 images)."""
    spec = dpl.BackboneSpec.of(clip_model)
    config = SearchSpace.of("ivlp", spec, settings.candidates).sample(torch.Generator().manual_seed(0))
    model = dpl.build_prompted_clip(clip_model, task.classnames, config.with_insertion(settings.insertion))
    optimizer = torch.optim.SGD(model.learnable_parameters(), lr=1e-3)
    images, labels = next(iter(DataLoader(task.train, batch_size=settings.batch_size)))
    times = []
    for _ in range(4):
        start = time.perf_counter()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    step = statistics.median(times[1:])
    sample = torch.utils.data.Subset(task.test, range(min(200, len(task.test))))
    start = time.perf_counter()
    scores(model, sample)
    per_image = (time.perf_counter() - start) / len(sample)
    steps = math.ceil(len(task.train) / settings.batch_size)
    training = settings.train_epochs * steps * step + len(task.val) * per_image
    rows = 1 + settings.random + 1 + len(settings.presets) * (1 + len(settings.searched_inits))
    runs = len(designs) * len(seeds)
    search = settings.search_epochs * steps * 5 * step
    total = runs * (rows * (len(settings.lrs) * training + len(task.test) * per_image) + len(settings.presets) * search)
    when = f"{total / 3600:.1f} h" if total > 3600 else f"{total / 60:.0f} min"
    return (f"estimated total at this machine's current speed, nothing cached: {when} "
            f"(at most {runs * rows * len(settings.lrs)} trainings of ~{training:.0f} s, {step * 1000:.0f} ms "
            f"per step; {runs * len(settings.presets)} searches of ~{search:.0f} s; {runs * rows} test "
            f"evaluations of ~{len(task.test) * per_image:.0f} s)")


QUICK = dict(seeds=[1], shots=4, train_epochs=2, search_epochs=2, random=2, lrs=[0.006], test_images=500,
             selects=["sampled"], select_samples=8, searched_inits=["searched", "guarded"])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Settings()
    parser.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=DESIGNS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--shots", type=int, default=default.shots)
    parser.add_argument("--shift", default=None, help="the demo task's shift (default: the demo's, rot90)")
    parser.add_argument("--test-images", type=int, default=None, help="evaluate on the first N test images (all 2,000)")
    parser.add_argument("--train-epochs", type=int, default=default.train_epochs)
    parser.add_argument("--search-epochs", type=int, default=default.search_epochs)
    parser.add_argument("--search-lr", type=float, default=default.search_lr)
    parser.add_argument("--alpha-lr", type=float, default=default.alpha_lr, help="the searches' alpha learning rate")
    parser.add_argument("--search-init", default=default.search_init, help="the supernet's prompt initialisation")
    parser.add_argument("--val-batch-size", type=int, default=default.val_batch_size,
                        help="the searches' alpha batches (VAL_BATCH_SIZE; a search epoch processes N + N * this / "
                             "--batch-size samples)")
    parser.add_argument("--select", default=default.select, choices=("argmax", "perturbation", "sampled"),
                        help="the searches' own selection (SELECT) of the searched rows")
    parser.add_argument("--lrs", type=float, nargs="+", default=list(default.lrs),
                        help="learning-rate grid; each configuration's is chosen on the validation split")
    parser.add_argument("--random", type=int, default=default.random, help="configurations drawn uniformly")
    parser.add_argument("--insertion", default=default.insertion, choices=("native", "prefix"))
    parser.add_argument("--presets", nargs="*", default=list(default.presets),
                        help="search presets (paper, robust); none: no searches (e.g. only --curve)")
    parser.add_argument("--searched-inits", nargs="*", default=list(default.searched_inits), choices=INITS,
                        help="extra rows: the searched configuration under these initialisations")
    parser.add_argument("--val-shots", type=int, default=None,
                        help="validation images per class (the demo's default: min(shots, 4); the pool holds 20)")
    parser.add_argument("--no-equal-cost", dest="equal_cost", action="store_false",
                        help="leave out the rows trained as many samples as DPL processed")
    parser.add_argument("--selects", nargs="*", default=[], choices=("argmax", "perturbation", "sampled"),
                        help="extra rows: the first preset's supernet under these selections (SELECT)")
    parser.add_argument("--select-samples", type=int, default=Settings().select_samples,
                        help="SELECT sampled: configurations drawn from softmax(alpha) and scored")
    parser.add_argument("--nested", action="store_true",
                        help="the searches' candidates share their tokens (NESTED)")
    parser.add_argument("--paths", default=default.paths, choices=PATH_MODES,
                        help="the searches' PATHS (single: give --select sampled)")
    parser.add_argument("--alpha-noise", type=float, default=default.alpha_noise,
                        help="the searches' ALPHA_NOISE (SDARTS-RS; their code: 0.3)")
    parser.add_argument("--beta-decay", type=float, default=default.beta_decay,
                        help="the searches' BETA_DECAY (beta-DARTS; their code: 50)")
    parser.add_argument("--probe-epochs", type=int, default=default.probe_epochs,
                        help="the guarded init's probe: the train stage's first N epochs from each start")
    parser.add_argument("--curve", type=int, nargs="*", default=[],
                        help="extra rows: the hand design trained this many epochs each (its learning curve)")
    parser.add_argument("--output", default=None, help="default output/search_quality (--quick: ..._quick)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a few minutes on 2 CPU cores: {QUICK} unless given explicitly")
    args = parser.parse_args(argv)
    if args.quick:
        given = {a.split("=")[0][2:].replace("-", "_") for a in (argv if argv is not None else sys.argv[1:])
                 if a.startswith("--")}
        for key, value in QUICK.items():
            if key not in given:
                setattr(args, key, value)
    args.output = args.output or ("output/search_quality_quick" if args.quick else "output/search_quality")
    return args


def main(argv=None):
    args = parse_args(argv)
    from dpl_plugin.demo.task import DEFAULT_SHIFT
    shift = args.shift or DEFAULT_SHIFT
    settings = Settings(shots=args.shots, train_epochs=args.train_epochs, search_epochs=args.search_epochs,
                        lrs=tuple(args.lrs), search_lr=args.search_lr, alpha_lr=args.alpha_lr,
                        search_init=args.search_init, random=args.random, insertion=args.insertion,
                        presets=tuple(args.presets), searched_inits=tuple(args.searched_inits),
                        equal_cost=args.equal_cost, selects=tuple(args.selects), select_samples=args.select_samples,
                        curve=tuple(args.curve), val_batch_size=args.val_batch_size, select=args.select,
                        nested=args.nested, paths=args.paths, alpha_noise=args.alpha_noise,
                        beta_decay=args.beta_decay, probe_epochs=args.probe_epochs)
    start = time.perf_counter()
    clip_model = dpl.load_clip("dpl-demo")
    spec = dpl.BackboneSpec.of(clip_model)
    print(f"dpl-demo: {spec.text_layers} text / {spec.vision_layers} vision layers, width {spec.text_width}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; designs {args.designs}, seeds {args.seeds}")
    print(f"settings: {dataclasses.asdict(settings)}")
    def task(seed):
        return demo_task(args.shots, seed, shift, args.test_images, args.val_shots)
    print(estimate(clip_model, task(args.seeds[0]), args.designs, args.seeds, settings), flush=True)
    report = benchmark(clip_model, task, args.designs, args.seeds, settings, args.output,
                       log=lambda line: print(line, flush=True))
    print()
    print(report["markdown"])
    print(f"\n{report['new_results']} trainings/searches run, the rest from {args.output}/cache.json; "
          f"{(time.perf_counter() - start) / 60:.1f} min. Wrote {args.output}/results.md, results.json, "
          f"{os.path.basename(report['plot'])}")


if __name__ == "__main__":
    main()
