"""Independent reference computations, written the way the baselines' code is written.

They use CLIP's own ``ResidualAttentionBlock.forward`` (sequence-first, ``nn.MultiheadAttention``,
the block's ``attn_mask``) on full 77-token sequences, and insert prompts as CoOp, VPT, IVLP and
MaPLe do: text context right after SOS, vision prompts appended after the positional embedding
(before ``ln_pre``), and at a deeper prompted layer the previous prompt outputs dropped and the
layer's own tokens put in their place. Nothing here shares code with ``dpl_plugin``'s encoders.
"""

import contextlib

import torch


def _mask(length):
    return torch.full((length, length), float("-inf")).triu_(1)


@contextlib.contextmanager
def _block_mask(block, mask):
    saved = block.attn_mask
    block.attn_mask = mask
    try:
        yield
    finally:
        block.attn_mask = saved


def _prefix_block(block, x, prompt, mask):
    """``x + MHA(q=LN1(x), kv=LN1([x; P]))`` with torch's ``nn.MultiheadAttention``."""
    h = block.ln_1(x)
    kv = torch.cat([h, block.ln_1(prompt).unsqueeze(1).expand(-1, x.shape[1], -1)], dim=0)
    if mask is not None:
        mask = torch.cat([mask, torch.zeros(mask.shape[0], prompt.shape[0])], dim=1)
    x = x + block.attn(h, kv, kv, need_weights=False, attn_mask=mask)[0]
    return x + block.mlp(block.ln_2(x))


def text_features(model, tokens, n_ctx=0, prompts=None, insertion="native", embedded=None):
    """Text features of full-length ``tokens`` (77 wide). ``prompts[l]``: ``(n, D)`` or None.

    native: ``prompts[0]`` fills positions ``1..1+n_ctx``; a deeper prompt replaces the current
    context tokens. prefix: every prompt is extra keys/values of its layer. ``embedded``: input
    embeddings to use instead of ``tokens``' (whose EOT positions are still used).
    """
    prompts = prompts or [None] * len(model.transformer.resblocks)
    x = model.token_embedding(tokens) if embedded is None else embedded
    if insertion == "native" and prompts[0] is not None:
        x = torch.cat([x[:, :1], prompts[0].expand(x.shape[0], -1, -1), x[:, 1 + n_ctx:]], dim=1)
    x = (x + model.positional_embedding).permute(1, 0, 2)
    n_current = n_ctx
    for layer, block in enumerate(model.transformer.resblocks):
        prompt = prompts[layer]
        if insertion == "prefix":
            x = _prefix_block(block, x, prompt, _mask(x.shape[0])) if prompt is not None else block(x)
            continue
        if layer > 0 and prompt is not None:
            x = torch.cat([x[:1], prompt.unsqueeze(1).expand(-1, x.shape[1], -1), x[1 + n_current:]], dim=0)
            n_current = prompt.shape[0]
        with _block_mask(block, _mask(x.shape[0])):
            x = block(x)
    x = model.ln_final(x.permute(1, 0, 2))
    eot = tokens.argmax(dim=-1) + (n_current - n_ctx)
    return x[torch.arange(x.shape[0]), eot] @ model.text_projection


def image_features(model, images, prompts=None, insertion="native"):
    visual = model.visual
    prompts = prompts or [None] * len(visual.transformer.resblocks)
    x = visual.conv1(images)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding
    n_current = 0
    if insertion == "native" and prompts[0] is not None:
        x = torch.cat([x, prompts[0].expand(x.shape[0], -1, -1)], dim=1)
        n_current = prompts[0].shape[0]
    x = visual.ln_pre(x).permute(1, 0, 2)
    for layer, block in enumerate(visual.transformer.resblocks):
        prompt = prompts[layer]
        if insertion == "prefix":
            x = _prefix_block(block, x, prompt, None) if prompt is not None else block(x)
            continue
        if layer > 0 and prompt is not None:
            x = torch.cat([x[: x.shape[0] - n_current], prompt.unsqueeze(1).expand(-1, x.shape[1], -1)], dim=0)
            n_current = prompt.shape[0]
        x = block(x)
    return visual.ln_post(x.permute(1, 0, 2)[:, 0]) @ visual.proj


def logits(model, image_feats, text_feats):
    image_feats = image_feats / image_feats.norm(dim=-1, keepdim=True)
    text_feats = text_feats / text_feats.norm(dim=-1, keepdim=True)
    return model.logit_scale.exp() * image_feats @ text_feats.t()
