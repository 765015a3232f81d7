"""DPL_KgCoOp: prompt lengths searched for KgCoOp (CoOp's text prompts + its knowledge-guided loss), Dassl trainer.

Drop-in for a CoOp-family fork: copy this file into its trainers/ and add to its train.py
``from trainers.dpl_kgcoop import extend_dpl_cfg`` and, after its own ``extend_cfg(cfg)``,
``extend_dpl_cfg(cfg)``. Needs ``pip install dpl-plugin``.
"""

from dassl.engine import TRAINER_REGISTRY

from dpl_plugin.dassl import extend_cfg as extend_dpl_cfg  # noqa: F401  (for the fork's train.py)
from dpl_plugin.dassl.trainer import DPLTrainer
from dpl_plugin.engine.objectives import KgCoOp, kgcoop_template


@TRAINER_REGISTRY.register()
class DPL_KgCoOp(DPLTrainer):
    design_name = "coop"

    def baseline_settings(self, cfg):
        node = cfg.TRAINER.COOP  # KgCoOp's CTX_INIT True means "a photo of a"
        ctx_init = "a photo of a" if node.CTX_INIT is True else str(node.CTX_INIT or "").replace("_", " ").strip()
        return {"n_ctx": len(ctx_init.split(" ")) if ctx_init else node.N_CTX}, ctx_init

    def build_objective(self, cfg):
        return KgCoOp(weight=cfg.TRAINER.COOP.W, template=kgcoop_template(cfg.DATASET.NAME))
