"""DPL_IVLP: prompt lengths searched for IVLP's design (independent text and vision prompts), Dassl trainer.

Drop-in for a CoOp-family fork: copy this file into its trainers/ and add to its train.py
``from trainers.dpl_ivlp import extend_dpl_cfg`` and, after its own ``extend_cfg(cfg)``,
``extend_dpl_cfg(cfg)``. Needs ``pip install dpl-plugin``.
"""

from dassl.engine import TRAINER_REGISTRY

from dpl_plugin.dassl import extend_cfg as extend_dpl_cfg  # noqa: F401  (for the fork's train.py)
from dpl_plugin.dassl.trainer import DPLTrainer


@TRAINER_REGISTRY.register()
class DPL_IVLP(DPLTrainer):
    design_name = "ivlp"

    def baseline_settings(self, cfg):
        node = cfg.TRAINER.IVLP
        return {"n_text": node.N_CTX_TEXT, "n_vision": node.N_CTX_VISION, "depth_text": node.PROMPT_DEPTH_TEXT,
                "depth_vision": node.PROMPT_DEPTH_VISION}, node.CTX_INIT
