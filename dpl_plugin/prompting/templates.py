"""Prompt templates (data).

* ``IMAGENET_TEMPLATES``: the 60 ImageNet templates the DPL train stage ensembles over (a subset of
  CLIP"s 80). dpl-plugin averages the normalised class *features* over them, as CLIP"s zero-shot
  ensembling does; the official DPL code averages the token *embeddings* of the 60 sequences instead.
* ``DATASET_TEMPLATES``: the hand-written per-dataset prompt of CoOp"s zero-shot CLIP baseline,
  keyed by the Dassl dataset name.
* ``DEFAULT_CONTEXT`` / ``DEFAULT_TEMPLATE``: "a photo of a {}.", CLIP's prompt and the fixed
  text of the official DPL search; its words initialise MaPLe's and IVLP's text prompts.
* ``TEXT_INPUTS`` and :func:`text_input`: the named fixed texts a run chooses from.
"""

from typing import List, Optional, Tuple

from ..errors import OptionError

DEFAULT_CONTEXT = "a photo of a"
DEFAULT_TEMPLATE = DEFAULT_CONTEXT + " {}."

IMAGENET_TEMPLATES = (
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
)

DATASET_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}

# default: the design's own text ("a photo of a {}." or the baseline's context); embedding_ensemble:
# the 60 ImageNet templates' token embeddings averaged into one sequence per class (the official DPL
# train stage); ensemble: their features averaged (CLIP); custom: CoOp's hand-written dataset prompt.
TEXT_INPUTS = ("default", "embedding_ensemble", "ensemble", "custom")


def text_input(text: str, dataset: str = "") -> Tuple[Optional[List[str]], str]:
    """``(templates, merge)`` of the fixed text ``text`` (one of :data:`TEXT_INPUTS`); templates
    None = the design's default text (:func:`~dpl_plugin.prompting.text_inputs.plan_text_input`)."""
    if text in ("ensemble", "embedding_ensemble"):
        return list(IMAGENET_TEMPLATES), "embeddings" if text == "embedding_ensemble" else "features"
    if text == "custom":
        if dataset not in DATASET_TEMPLATES:
            raise OptionError(f"TRAINER.DPL.TEXT custom: no hand-written prompt for dataset '{dataset}'; known: "
                              f"{sorted(DATASET_TEMPLATES)}. Use TEXT default or ensemble")
        return [DATASET_TEMPLATES[dataset]], "features"
    return None, "features"
