"""Dassl integration: the DPL trainers' shared behaviour, config keys and benchmark datasets.

Importing this package requires Dassl (https://github.com/KaiyangZhou/Dassl.pytorch, not on PyPI);
the core ``dpl_plugin`` never imports it.
"""

try:
    import dassl  # noqa: F401
except ModuleNotFoundError as err:
    if err.name != "dassl":
        raise
    raise ImportError(
        "dpl_plugin.dassl needs Dassl, which is not on PyPI: run `bash scripts/install_dassl.sh` in the "
        "dpl-plugin repository (it installs KaiyangZhou/Dassl.pytorch at the tested commit)"
    ) from err

from .config import extend_cfg  # noqa: E402

__all__ = ["extend_cfg"]
