"""Loading OpenCLIP models offline, from the user's cache or a path.

Three name forms (after the ``open_clip:`` prefix that selects this family):

* ``ARCH/TAG`` -- a built-in architecture and one of its pretrained tags, e.g.
  ``ViT-B-16/laion2b_s34b_b88k``. The weights are looked up where OpenCLIP's own download puts
  them -- the Hugging Face hub cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or
  ``~/.cache/huggingface/hub``) or, for URL-hosted tags, ``~/.cache/clip`` -- and never downloaded.
* ``ARCH//path/to/weights.bin`` (or any path after ``ARCH/``) -- a built-in architecture and a
  local weights file.
* ``/path/to/folder`` -- a folder holding ``open_clip_config.json`` and the weights (the layout of
  an OpenCLIP model on the Hugging Face hub, OpenCLIP's ``local-dir:``).

Nothing that OpenCLIP would fetch at build time is asked of it: ``hf-hub:`` names, Hugging Face
tokenizers and text towers and timm image encoders are refused before a model is built.
"""

from __future__ import annotations

import glob
import json
import os
import warnings
from typing import Optional, Union

import torch

from ..errors import OptionError
from .interface import CorruptWeightsError, UnsupportedBackboneError, WeightsNotFoundError
from .weights_check import nonfinite_problem

HF_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # OpenCLIP's preference order
URL_CACHE = os.path.expanduser("~/.cache/clip")
FORMS = "open_clip:ARCH/TAG (e.g. open_clip:ViT-B-16/laion2b_s34b_b88k), open_clip:ARCH//path/to/weights.bin " \
        "or open_clip:/path/to/folder (open_clip_config.json and weights)"


def import_open_clip():
    try:
        import open_clip
    except ImportError as err:
        raise OptionError("OpenCLIP backbones need the optional extra: pip install -e .[openclip] "
                          f"(open_clip_torch) ({err})") from err
    return open_clip


def hub_cache(cache_dir: Optional[str] = None) -> str:
    if cache_dir:
        return cache_dir
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    return os.path.join(os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")


def _hub_files(repo: str, filename: str, cache_dir: Optional[str]):
    """Where the hub cache keeps ``repo``'s ``filename``: ``models--ORG--NAME/snapshots/REV/FILE``
    (the revision ``refs/main`` names first)."""
    root = os.path.join(hub_cache(cache_dir), "models--" + repo.replace("/", "--"))
    names = [filename] if filename else list(HF_WEIGHTS)
    main = os.path.join(root, "refs", "main")
    revisions = [open(main).read().strip()] if os.path.isfile(main) else []
    revisions += [os.path.basename(p) for p in sorted(glob.glob(os.path.join(root, "snapshots", "*")))]
    return root, [os.path.join(root, "snapshots", rev, name) for rev in revisions for name in names]


def resolve_tag(arch: str, tag: str, cache_dir: Optional[str] = None) -> str:
    """The local file of a pretrained tag's weights (WeightsNotFoundError naming where to put it)."""
    open_clip = import_open_clip()
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        raise WeightsNotFoundError(
            f"'{tag}' is not a pretrained tag of OpenCLIP's {arch} (its tags: "
            f"{', '.join(open_clip.list_pretrained_tags_by_model(arch)) or 'none'}). Name a tag, or a local file: "
            f"open_clip:{arch}//path/to/weights.bin")
    candidates, where = [], []
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])  # OpenCLIP's convention: "org/name/" = the default file
        root, files = _hub_files(repo, filename, cache_dir)
        candidates += files
        where.append(f"the Hugging Face hub cache ({root}/snapshots/<revision>/{filename or HF_WEIGHTS[1]}; download "
                     f"on a machine with internet: huggingface-cli download {repo} {filename or HF_WEIGHTS[1]}, then "
                     f"copy {root})")
    if cfg.get("url"):
        target = os.path.join(cache_dir or URL_CACHE, os.path.basename(cfg["url"]))
        candidates.append(target)
        where.append(f"{target} (download {cfg['url']})")
    safetensors = _has_safetensors()
    for path in candidates:
        if os.path.isfile(path) and (safetensors or not path.endswith(".safetensors")):
            return path
    raise WeightsNotFoundError(
        f"the weights of OpenCLIP's {arch}/{tag} are not on this machine (nothing is downloaded). Expected in "
        f"{' or '.join(where)}; or pass the file itself: open_clip:{arch}//path/to/weights.bin")


def _has_safetensors() -> bool:
    import importlib.util

    return importlib.util.find_spec("safetensors") is not None


def _model_config(open_clip, arch: Optional[str], folder: Optional[str]) -> dict:
    if folder is None:
        cfg = open_clip.get_model_config(arch)
        if cfg is None:
            raise WeightsNotFoundError(f"'{arch}' is not one of OpenCLIP's architectures (open_clip.list_models() lists "
                                       f"them, e.g. ViT-B-16, ViT-L-14). Use {FORMS}")
        return cfg
    path = os.path.join(folder, "open_clip_config.json")
    if not os.path.isfile(path):
        raise WeightsNotFoundError(f"{folder} has no open_clip_config.json: an OpenCLIP model folder holds it and the "
                                   f"weights (as on the Hugging Face hub). Use {FORMS}")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)["model_cfg"]
        except (ValueError, KeyError) as err:
            raise CorruptWeightsError(f"{path} is not an OpenCLIP config (no 'model_cfg' in its JSON: {err})") from err


def _refuse_remote_parts(cfg: dict, what: str) -> None:
    """Parts that OpenCLIP would fetch from the hub at build time, and that prompts cannot enter anyway:
    refused before anything is built."""
    text, vision = cfg.get("text_cfg", {}), cfg.get("vision_cfg", {})
    for feature, value in (("the Hugging Face tokenizer", text.get("hf_tokenizer_name")),
                           ("the Hugging Face text encoder", text.get("hf_model_name")),
                           ("the timm image encoder", vision.get("timm_model_name"))):
        if value:
            raise UnsupportedBackboneError(f"OpenCLIP's {what} uses {feature} {value}; only OpenCLIP's own "
                                           f"transformers with CLIP's BPE tokenizer are supported")


def parse(name: str):
    """``(architecture, weights file, folder)`` of a name after ``open_clip:`` (two of them None or set)."""
    if name.startswith("local-dir:"):  # OpenCLIP's own spelling of a folder
        name = name[len("local-dir:"):]
    if os.path.isdir(name):
        return None, None, name
    if name.startswith("hf-hub:"):  # OpenCLIP would download it: the offline route is the folder
        raise WeightsNotFoundError(
            f"'open_clip:{name}' names a Hugging Face hub repository, which is not downloaded here. Download it on a "
            f"machine with internet (huggingface-cli download {name[len('hf-hub:'):]}) and pass its folder: "
            f"open_clip:/path/to/folder")
    arch, _, rest = name.partition("/")
    if not arch or name.startswith("."):
        raise WeightsNotFoundError(f"the OpenCLIP model folder {name} does not exist. Use {FORMS}")
    if not rest:
        raise WeightsNotFoundError(f"'open_clip:{name}' names an architecture but no weights. Use {FORMS}")
    return arch, rest, None


def load(name: str, device: Union[str, torch.device] = "cpu", precision: str = "fp32",
         download_root: Optional[str] = None):
    """A frozen, eval-mode OpenCLIP model and its tokenizer, from a name after ``open_clip:`` (see the
    module's description). ``download_root``: the hub cache to look in instead of the default one."""
    open_clip = import_open_clip()
    from . import open_clip_family  # imports open_clip: only once an OpenCLIP model is asked for

    arch, weights, folder = parse(name)
    cfg = _model_config(open_clip, arch, folder)
    _refuse_remote_parts(cfg, arch or folder)
    if folder is not None:
        source, weights = "local-dir:" + folder, _folder_weights(folder)
    else:
        source = arch
        is_file = os.sep in weights or "/" in weights or "." in weights or os.path.isfile(weights)
        weights = weights if is_file else resolve_tag(arch, weights, download_root)
        if not os.path.isfile(weights):
            raise WeightsNotFoundError(f"OpenCLIP weights file {weights} does not exist. Use {FORMS}")
    device = torch.device(device)
    if precision == "fp16" and device.type == "cpu":
        warnings.warn("fp16 is not supported on CPU; using fp32", stacklevel=2)
        precision = "fp32"
    try:
        model = open_clip.create_model(source, pretrained=None if folder else weights, device=device,
                                       precision="fp16" if precision == "fp16" else "fp32",
                                       pretrained_image=False, pretrained_text=False)
    except (RuntimeError, KeyError, ValueError, EOFError, OSError) as err:
        raise CorruptWeightsError(f"cannot load OpenCLIP {arch or 'model'} weights from {weights}: {err}. The file is "
                                  f"truncated, corrupt or of another architecture: re-download or re-export it") from err
    problem = nonfinite_problem(model.state_dict(), weights)
    if problem:
        raise CorruptWeightsError(problem)
    setattr(model, open_clip_family.TOKENIZER_ATTRIBUTE, open_clip.get_tokenizer(source))
    open_clip_family.OpenCLIP(model)  # refuses, naming the feature, what prompts cannot enter
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def _folder_weights(folder: str) -> str:
    for name in HF_WEIGHTS:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise WeightsNotFoundError(f"the OpenCLIP model folder {folder} holds no weights ({' or '.join(HF_WEIGHTS)})")
