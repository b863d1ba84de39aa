"""Tiny SAM and DINOv2 with random weights: the real architectures at test sizes, no files, no network."""

from __future__ import annotations

from functools import partial

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from transformers import Dinov2Config, Dinov2Model

TINY_SAM_SIZE = 64  # input side of the tiny SAM image encoder
TINY_DINOV2_DIM = 32


def tiny_sam(seed: int = 0) -> Sam:
    """A SAM with a 2-block, 32-wide ViT on 64 px inputs and a 1-block mask decoder, in eval mode."""
    torch.manual_seed(seed)
    patch, dim = 8, 32
    grid = TINY_SAM_SIZE // patch
    model = Sam(
        image_encoder=ImageEncoderViT(
            img_size=TINY_SAM_SIZE,
            patch_size=patch,
            embed_dim=dim,
            depth=2,
            num_heads=2,
            mlp_ratio=2.0,
            out_chans=dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=4,
            global_attn_indexes=(1,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(grid, grid),
            input_image_size=(TINY_SAM_SIZE, TINY_SAM_SIZE),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=dim,
            transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
            num_multimask_outputs=3,
            iou_head_depth=2,
            iou_head_hidden_dim=32,
        ),
    )
    return model.eval()


def tiny_dinov2(seed: int = 0, **overrides) -> Dinov2Model:
    """A 2-layer, 32-wide DINOv2 with 14 px patches, in eval mode; ``overrides`` change the config."""
    torch.manual_seed(seed)
    config = Dinov2Config(
        **{
            "hidden_size": TINY_DINOV2_DIM,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "mlp_ratio": 2,  # Dinov2Config sizes the MLP by ratio: 64 hidden units
            "image_size": 56,
            "patch_size": 14,
            **overrides,
        }
    )
    return Dinov2Model(config).eval()
