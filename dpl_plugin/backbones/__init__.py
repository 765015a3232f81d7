"""Loading a CLIP family and describing it; the prompting wing builds on what this wing exposes.

``interface`` (what prompts need from a family: towers, blocks, tokenizer, shapes), ``blocks``,
``towers`` and ``spec`` are family-neutral; ``registry`` picks the family of a name or a model.
Each family is a binding module (``openai_family``, ``open_clip_family``) plus its loading
(``openai_clip`` with ``clip_package`` and ``weights_check``; ``open_clip_loading``).
"""
