"""Import the installed openai ``clip`` package with an actionable error.

``openai-clip`` 1.0.1 imports ``pkg_resources``, which setuptools >= 81 no longer ships.
"""

import warnings

try:
    with warnings.catch_warnings():  # clip's own pkg_resources deprecation notice is noise here
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import clip  # noqa: F401
        import clip.clip as clip_api  # the module behind clip.load: _MODELS, _download, _tokenizer
        import clip.model as clip_model_module  # noqa: F401
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
