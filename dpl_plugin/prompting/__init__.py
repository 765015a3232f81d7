"""How prompts enter a frozen CLIP: attention with prompt keys, the insertion hooks, the prompted
encoders, the prompt learners and their initialisation, the text inputs and ``PromptedCLIP``."""
