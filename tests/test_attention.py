"""The single-pass candidate mixture against the per-candidate reference, and what it keeps for backward."""

import copy

import pytest
import torch

import dpl_plugin.prompting.attention as attention
from dpl_plugin.prompting.attention import (CandidateMixture, mixture_attention, prefix_attention,
                                            reference_mixture_attention)
from dpl_plugin.backbones.blocks import as_projections
from dpl_plugin.runtime.memory import SavedActivations

CANDIDATES = [0, 1, 2, 4, 6]


def causal(length, dtype=torch.float32):
    return torch.full((length, length), float("-inf"), dtype=dtype).triu_(1)


def mixture_inputs(width, dtype, seed=0, length=9, batch=3):
    """Layer input, candidate tokens (zero-padded) and architecture logits, as float leaves."""
    g = torch.Generator().manual_seed(seed)
    h = 2 * torch.randn(batch, length, width, generator=g, dtype=dtype)
    tokens = torch.randn(len(CANDIDATES), max(CANDIDATES), width, generator=g, dtype=dtype)
    for k, c in enumerate(CANDIDATES):
        tokens[k, c:] = 0
    logits = torch.randn(len(CANDIDATES), generator=g, dtype=dtype)
    upstream = torch.randn(batch, length, width, generator=g, dtype=dtype)
    return h, tokens, logits, upstream


def output_and_grads(fn, attn, h, tokens, logits, upstream, mask, autocast=None):
    """The output (under ``autocast``: a dtype, or None) and the gradients (outside it, as a training
    step takes them)."""
    h, tokens, logits = (t.clone().requires_grad_() for t in (h, tokens, logits))
    with torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
        mixture = CandidateMixture(tokens, torch.tensor(CANDIDATES), torch.softmax(logits, 0))
        out = fn(attn, h, mixture, mask)
    grads = torch.autograd.grad((out * upstream).sum(), (h, tokens, logits))
    return (out.detach(), *grads)


def assert_exact(actual, expected, rel, name=""):
    """Equal to ``rel`` relative to the tensor's scale (fp32 sums round at ~1e-7 of their terms)."""
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * expected.abs().max().item(),
                               msg=lambda message: f"{name}: {message}")


@pytest.mark.parametrize("dtype,rel", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("branch", ["text", "vision"])
def test_single_pass_equals_per_candidate_reference(tiny_clip, branch, dtype, rel):
    """Output and the gradients of the layer input, the prompts and alpha; text with CLIP's causal
    mask, vision without."""
    blocks = tiny_clip.transformer.resblocks if branch == "text" else tiny_clip.visual.transformer.resblocks
    attn = copy.deepcopy(blocks[1].attn).to(dtype)
    h, tokens, logits, upstream = mixture_inputs(attn.embed_dim, dtype)
    mask = causal(h.shape[1], dtype) if branch == "text" else None
    fast = output_and_grads(mixture_attention, attn, h, tokens, logits, upstream, mask)
    slow = output_and_grads(reference_mixture_attention, attn, h, tokens, logits, upstream, mask)
    for name, a, b in zip(("output", "input grad", "prompt grad", "alpha grad"), fast, slow):
        assert_exact(a, b, rel, name)


def test_single_pass_without_the_cpu_kernel_is_the_same(tiny_clip, monkeypatch):
    """The path other devices take (fused attention, then the log-sum-exp from the scores, and the
    backward from recomputed probabilities) gives the same result."""
    attn = copy.deepcopy(tiny_clip.transformer.resblocks[0].attn).double()
    h, tokens, logits, upstream = mixture_inputs(attn.embed_dim, torch.float64, seed=4)
    mask = causal(h.shape[1], torch.float64)
    expected = output_and_grads(reference_mixture_attention, attn, h, tokens, logits, upstream, mask)
    monkeypatch.setattr(attention, "_CPU_FUSED", None)
    monkeypatch.setattr(attention, "_CPU_FUSED_BACKWARD", None)
    for a, b in zip(output_and_grads(mixture_attention, attn, h, tokens, logits, upstream, mask), expected):
        assert_exact(a, b, 1e-12)


def plain_attention_with_lse(q, k, v, mask, scale):
    scores = q @ k.transpose(-1, -2) * scale + mask
    return torch.softmax(scores, -1) @ v, torch.logsumexp(scores, -1)


@pytest.mark.parametrize("zero_rows", [False, True])
def test_fused_attention_and_its_log_sum_exp_are_differentiable(zero_rows):
    """Both outputs' gradients reach q, k and v. With rows whose output gradient is zero but whose
    log-sum-exp gradient is not, the fused kernel cannot carry the latter: the other backward does."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=g, dtype=torch.float64) for _ in range(3))
    mask = causal(7, torch.float64)
    d_out, d_lse = torch.randn(2, 3, 7, 8, generator=g, dtype=torch.float64), torch.randn(2, 3, 7, generator=g,
                                                                                          dtype=torch.float64)
    if zero_rows:
        d_out[0, 1, 2] = 0
    results = []
    for fn in (attention._AttentionWithLSE.apply, plain_attention_with_lse):
        inputs = [t.clone().requires_grad_() for t in (q, k, v)]
        out, lse = fn(*inputs, mask, 8 ** -0.5)
        results.append([out, lse, *torch.autograd.grad((out * d_out).sum() + (lse * d_lse).sum(), inputs)])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_single_pass_keeps_less_than_the_longest_fixed_prompt(tiny_clip):
    """What autograd saves: nothing of size L x L (unlike softmax(Q K^T)), and no more than fused
    attention with the longest candidate as a fixed prefix."""
    attn = tiny_clip.visual.transformer.resblocks[0].attn
    length, batch = 100, 2  # L x L is larger than any (L, d) tensor here
    h, tokens, logits, _ = mixture_inputs(attn.embed_dim, torch.float32, length=length, batch=batch)
    h.requires_grad_()
    tokens.requires_grad_()
    mixture = CandidateMixture(tokens, torch.tensor(CANDIDATES), torch.softmax(logits.requires_grad_(), 0))
    shapes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: shapes.append(t.shape) or t, lambda t: t):
        mixture_attention(attn, h, mixture)
    with SavedActivations(exclude=attn.parameters()) as single:
        mixture_attention(attn, h, mixture)
    with SavedActivations(exclude=attn.parameters()) as fixed:
        prefix_attention(attn, h, tokens[-1])
    assert not [s for s in shapes if s[-2:] == (length, length)]
    assert 0 < single.bytes <= fixed.bytes


def test_single_pass_is_stable_when_a_prompt_dominates(tiny_clip):
    """Prompt scores in the thousands, far above the real tokens': no overflow, and as accurate
    as fp32 allows (checked against the reference in float64)."""
    attn = tiny_clip.visual.transformer.resblocks[0].attn
    h, tokens, logits, _ = mixture_inputs(attn.embed_dim, torch.float32, length=5, batch=2)
    tokens, weights = tokens * 300.0, torch.softmax(logits, 0)
    with torch.no_grad():
        out = mixture_attention(attn, h, CandidateMixture(tokens, torch.tensor(CANDIDATES), weights))
        ref = reference_mixture_attention(copy.deepcopy(attn).double(), h.double(),
                                          CandidateMixture(tokens.double(), torch.tensor(CANDIDATES), weights.double()))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-6 * ref.abs().max().item())


def test_fused_attention_is_twice_differentiable():
    """An exact second-order hypergradient (create_graph=True) differentiates the backward pass."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 5, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = causal(5, torch.float64)
    assert torch.autograd.gradgradcheck(lambda *qkv: attention._AttentionWithLSE.apply(*qkv, mask, 0.5), (q, k, v))


@pytest.mark.parametrize("cpu_kernel", [True, False], ids=["cpu-kernel", "other-devices-path"])
def test_amp_scores_do_not_overflow_with_large_queries_and_keys(tiny_clip, monkeypatch, cpu_kernel):
    """``PREC amp`` as CPU autocast in fp16. Queries and keys of the text branch scaled up so that
    unscaled ``|q.k|`` reaches ~1e5 (fp16 ends at 65504) while the scaled scores stay ~1e4: the
    single pass stays finite, forward and backward, and agrees with one fp16 attention per
    candidate (the gradients of both are ~5e-2 from float64's: fp16 rounding of such scores)."""
    attn = copy.deepcopy(tiny_clip.transformer.resblocks[1].attn)
    with torch.no_grad():
        attn.in_proj_weight[: 2 * attn.embed_dim] *= 30.0
    h, tokens, logits, upstream = mixture_inputs(attn.embed_dim, torch.float32)
    mask = causal(h.shape[1])
    if not cpu_kernel:
        monkeypatch.setattr(attention, "_CPU_FUSED", None)
        monkeypatch.setattr(attention, "_CPU_FUSED_BACKWARD", None)
    with torch.no_grad():
        q, k, _ = attention._project_qkv(as_projections(attn), h)
        assert (q @ k.transpose(-1, -2)).abs().max() > 65504
    fast = output_and_grads(mixture_attention, attn, h, tokens, logits, upstream, mask, torch.float16)
    per_candidate = output_and_grads(reference_mixture_attention, attn, h, tokens, logits, upstream, mask,
                                     torch.float16)
    exact = output_and_grads(reference_mixture_attention, copy.deepcopy(attn).double(), h.double(),
                             tokens.double(), logits.double(), upstream.double(), mask.double())
    assert fast[0].dtype == torch.float16
    for name, a, b in zip(("output", "input grad", "prompt grad", "alpha grad"), fast, per_candidate):
        assert torch.isfinite(a).all(), name
        assert_exact(a.double(), b.double(), 1e-2, name)  # the two fp16 computations
    assert_exact(fast[0].double(), exact[0], 5e-3, "output against float64")
