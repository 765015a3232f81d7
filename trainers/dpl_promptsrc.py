"""DPL_PromptSRC: prompt lengths searched for PromptSRC (IVLP's prompts + its self-regulating losses and
Gaussian prompt aggregation), Dassl trainer.

Drop-in for a CoOp-family fork: copy this file into its trainers/ and add to its train.py
``from trainers.dpl_promptsrc import extend_dpl_cfg`` and, after its own ``extend_cfg(cfg)``,
``extend_dpl_cfg(cfg)``. Needs ``pip install dpl-plugin``.
"""

from dassl.engine import TRAINER_REGISTRY

from dpl_plugin.dassl import extend_cfg as extend_dpl_cfg  # noqa: F401  (for the fork's train.py)
from dpl_plugin.dassl.trainer import DPLTrainer
from dpl_plugin.engine.averaging import GaussianPromptAveraging
from dpl_plugin.engine.objectives import PromptSRC


@TRAINER_REGISTRY.register()
class DPL_PromptSRC(DPLTrainer):
    design_name = "ivlp"

    def baseline_settings(self, cfg):
        node = cfg.TRAINER.PROMPTSRC
        return {"n_text": node.N_CTX_TEXT, "n_vision": node.N_CTX_VISION, "depth_text": node.PROMPT_DEPTH_TEXT,
                "depth_vision": node.PROMPT_DEPTH_VISION}, node.CTX_INIT

    def build_objective(self, cfg):
        node = cfg.TRAINER.PROMPTSRC
        return PromptSRC(text_weight=node.TEXT_LOSS_WEIGHT, image_weight=node.IMAGE_LOSS_WEIGHT)

    def build_averaging(self, cfg):
        return GaussianPromptAveraging(cfg.TRAINER.PROMPTSRC.GPA_MEAN, cfg.TRAINER.PROMPTSRC.GPA_STD)
