"""A CLIP's text and image encoders as the sequence of steps that prompts enter between.

The towers hold the model's own modules (registered, so they follow the model across devices and
dtypes) and only name the steps: embedding, positions, the blocks, pooling and projection. With no
prompts, ``pool(blocks(add_positions(embed(x))))`` is what the model's own encoder computes.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Union

import torch
from torch import nn

from .blocks import PromptableBlock

Projection = Union[None, torch.Tensor, nn.Module]  # a matrix, a Linear, or nothing


def project(x: torch.Tensor, projection: Projection) -> torch.Tensor:
    if projection is None:
        return x
    return projection(x) if isinstance(projection, nn.Module) else x @ projection


def output_dim(projection: Projection, width: int) -> int:
    if projection is None:
        return width
    return projection.out_features if isinstance(projection, nn.Linear) else projection.shape[1]


class _Tower(nn.Module):
    def __init__(self, blocks: nn.ModuleList, block_view: Callable[[nn.Module], PromptableBlock]):
        super().__init__()
        self.resblocks = blocks
        self.blocks: List[PromptableBlock] = [block_view(block) for block in blocks]

    @property
    def dtype(self) -> torch.dtype:
        return self.blocks[0].dtype


class TextTower(_Tower):
    """Token embedding, learned positions, the blocks (causal), final norm, pooling, projection.

    ``pooling``: ``eot`` (the end-of-text token's position, which moves with native prompts) or
    ``last`` (the sequence's last position; sequences are then kept at full context length).
    """

    def __init__(self, token_embedding: nn.Embedding, positional_embedding: torch.Tensor, blocks: nn.ModuleList,
                 block_view, final_norm: nn.Module, projection: Projection, pooling: str = "eot"):
        super().__init__(blocks, block_view)
        self.token_embedding = token_embedding
        self.positional_embedding = positional_embedding
        self.final_norm = final_norm
        self.projection = projection
        self.pooling = pooling

    @property
    def width(self) -> int:
        return self.token_embedding.weight.shape[1]

    @property
    def output_dim(self) -> int:
        return output_dim(self.projection, self.width)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.token_embedding(tokens).to(self.dtype)

    def add_positions(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.positional_embedding[: x.shape[1]].to(self.dtype)

    def pool(self, x: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        x = self.final_norm(x).to(self.dtype)
        pooled = x[:, -1] if self.pooling == "last" else x[torch.arange(x.shape[0], device=x.device), eot]
        return project(pooled, self.projection)


class ImageTower(nn.Module):
    """An image encoder that prompts do not enter (a ResNet): ``forward`` is the model's own."""

    blocks = ()

    def __init__(self, encoder: nn.Module, weight: torch.Tensor):
        super().__init__()
        self.encoder = encoder
        self._weight = weight  # read for the input dtype only

    @property
    def dtype(self) -> torch.dtype:
        return self._weight.dtype

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images.to(self.dtype))


class VisionTower(_Tower):
    """Patch embedding, class token, learned positions, pre-norm, the blocks, pooling, post-norm,
    projection.

    ``pooling``: ``tok`` (the class token) or ``avg`` (the mean of the patch tokens);
    ``norm_after_pool``: the post-norm applies to the pooled feature instead of to every token.
    ``token_dropout``: applied after the positions (OpenCLIP's patch dropout; identity in eval mode).
    """

    def __init__(self, patch_embedding: nn.Conv2d, class_embedding: torch.Tensor, positional_embedding: torch.Tensor,
                 pre_norm: nn.Module, blocks: nn.ModuleList, block_view, post_norm: nn.Module, projection: Projection,
                 pooling: str = "tok", norm_after_pool: bool = False, token_dropout: Optional[nn.Module] = None):
        super().__init__(blocks, block_view)
        self.patch_embedding = patch_embedding
        self.class_embedding = class_embedding
        self.positional_embedding = positional_embedding
        self.pre_norm, self.post_norm = pre_norm, post_norm
        self.projection = projection
        self.pooling, self.norm_after_pool = pooling, norm_after_pool
        self.token_dropout = token_dropout

    @property
    def width(self) -> int:
        return self.class_embedding.shape[-1]

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Class and patch tokens with their positions, before the pre-norm: ``(B, 1 + patches, D)``."""
        x = self.patch_embedding(images.to(self.patch_embedding.weight.dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        return self.token_dropout(x) if self.token_dropout is not None else x

    def pool(self, x: torch.Tensor, n_image: int) -> torch.Tensor:
        """The image feature from the first ``n_image`` tokens (class and patches; prompt tokens that
        native insertion appended after them are not part of the image)."""
        if self.pooling == "tok":  # one token: the norm commutes with the pooling
            return project(self.post_norm(x[:, 0]), self.projection)
        patches = x[:, 1:n_image]
        if self.norm_after_pool:
            return project(self.post_norm(patches.mean(dim=1)), self.projection)
        return project(self.post_norm(patches).mean(dim=1), self.projection)
