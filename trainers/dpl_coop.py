"""DPL_CoOp: prompt lengths searched for CoOp's design (text prompts only), Dassl trainer.

Drop-in for a CoOp-family fork: copy this file into its trainers/ and add to its train.py
``from trainers.dpl_coop import extend_dpl_cfg`` and, after its own ``extend_cfg(cfg)``,
``extend_dpl_cfg(cfg)``. Needs ``pip install dpl-plugin``.
"""

from dassl.engine import TRAINER_REGISTRY

from dpl_plugin.dassl import extend_cfg as extend_dpl_cfg  # noqa: F401  (for the fork's train.py)
from dpl_plugin.dassl.trainer import DPLTrainer
from dpl_plugin.errors import OptionError


@TRAINER_REGISTRY.register()
class DPL_CoOp(DPLTrainer):
    design_name = "coop"

    def baseline_settings(self, cfg):
        node = cfg.TRAINER.COOP
        if node.CSC or node.CLASS_TOKEN_POSITION != "end":
            raise OptionError("DPL_CoOp supports CoOp's generic context with the class token at the end: "
                              "set TRAINER.COOP.CSC False and TRAINER.COOP.CLASS_TOKEN_POSITION end")
        ctx_init = node.CTX_INIT.replace("_", " ").strip()
        n_ctx = len(ctx_init.split(" ")) if ctx_init else node.N_CTX  # CoOp: one token per init word
        return {"n_ctx": n_ctx}, ctx_init
