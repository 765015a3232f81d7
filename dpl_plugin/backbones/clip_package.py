"""Import the installed openai ``clip`` package with an actionable error.

``openai-clip`` 1.0.1 imports ``pkg_resources``, which setuptools >= 81 no longer ships.

CoOp-family forks vendor a ``clip/`` folder at their root that shadows the installed package when
their ``train.py`` runs; MaPLe's copy changes ``build_model``'s signature and the model classes. The
installed package is therefore loaded from its own files (under a private module name) whenever
``import clip`` would resolve elsewhere, so that a DPL trainer dropped into such a fork works.
"""

import importlib
import importlib.metadata
import importlib.util
import os
import sys
import warnings

_PRIVATE_NAME = "_dpl_installed_clip"


def _installed_clip_dir():
    for dist in ("openai-clip", "clip-anytorch"):
        try:
            init = str(importlib.metadata.distribution(dist).locate_file("clip/__init__.py"))
        except importlib.metadata.PackageNotFoundError:
            continue
        if os.path.isfile(init):
            return os.path.dirname(init)
    return None


def _import_clip():
    installed = _installed_clip_dir()
    found = importlib.util.find_spec("clip") if "clip" not in sys.modules else sys.modules["clip"].__spec__
    shadowed = (installed is not None and found is not None and found.origin is not None
                and os.path.realpath(os.path.dirname(found.origin)) != os.path.realpath(installed))
    if not shadowed:
        import clip
        return clip, importlib.import_module("clip.clip"), importlib.import_module("clip.model")
    if _PRIVATE_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(_PRIVATE_NAME, os.path.join(installed, "__init__.py"),
                                                      submodule_search_locations=[installed])
        module = importlib.util.module_from_spec(spec)
        sys.modules[_PRIVATE_NAME] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[_PRIVATE_NAME]
            raise
    return (sys.modules[_PRIVATE_NAME], importlib.import_module(_PRIVATE_NAME + ".clip"),
            importlib.import_module(_PRIVATE_NAME + ".model"))


try:
    with warnings.catch_warnings():  # clip's own pkg_resources deprecation notice is noise here
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        # clip_api: the module behind clip.load (_MODELS, _download, _tokenizer)
        clip, clip_api, clip_model_module = _import_clip()
except ModuleNotFoundError as err:
    if err.name == "pkg_resources":
        raise ImportError(
            "`import clip` failed because setuptools >= 81 no longer provides pkg_resources. "
            "Install a compatible one: pip install 'setuptools<81'"
        ) from err
    if err.name == "clip":
        raise ImportError("The openai CLIP package is missing: pip install openai-clip") from err
    raise

__all__ = ["clip", "clip_api", "clip_model_module"]
