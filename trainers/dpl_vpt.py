"""DPL_VPT: prompt lengths searched for VPT-deep's design (vision prompts only), Dassl trainer.

Drop-in for a CoOp-family fork: copy this file into its trainers/ and add to its train.py
``from trainers.dpl_vpt import extend_dpl_cfg`` and, after its own ``extend_cfg(cfg)``,
``extend_dpl_cfg(cfg)``. Needs ``pip install dpl-plugin``.
"""

from dassl.engine import TRAINER_REGISTRY

from dpl_plugin.dassl import extend_cfg as extend_dpl_cfg  # noqa: F401  (for the fork's train.py)
from dpl_plugin.dassl.trainer import DPLTrainer


@TRAINER_REGISTRY.register()
class DPL_VPT(DPLTrainer):
    design_name = "vpt"

    def baseline_settings(self, cfg):
        node = cfg.TRAINER.VPT
        return {"n_ctx": node.N_CTX_VISION, "depth": node.PROMPT_DEPTH_VISION}, ""  # text: "a photo of a {}."
