"""The built-in ``tiny`` model: a ~5 MB Stable Diffusion pipeline with random weights, SD 1.x's classes with one
resnet per UNet block (and, through :mod:`sweepd.workload.tinyfamilies`, ``tiny-sdxl``, ``tiny-sd3`` and
``tiny-flux``).

It is built once from configs into the cache dir, saved with ``save_pretrained`` and then loaded
with ``from_pretrained`` exactly like a downloaded model, so the whole real code path runs on a
machine with no network and no GPU. Its pictures are noise; its timing and data flow are real.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from sweepd.families import TINY, Family

TINY_VERSION = 2  # bump when the architecture below changes: a new cache folder is built
FAMILY_VERSION = 1  # the same for tinyfamilies' models
SAMPLE_SIZE = 32


def _byte_vocab() -> dict[str, int]:
    """CLIP's byte-level alphabet (as in GPT-2's bytes_to_unicode), each char alone and word-final."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    chars = [chr(c) for c in cs]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


def _clip_tokenizer(vocab: dict[str, int]):
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"), model_max_length=77)


def build(target: Path, name: str = "tiny") -> None:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    vocab = _byte_vocab()
    tokenizer = _clip_tokenizer(vocab)
    if TINY[name] is not Family.SD:
        from sweepd.workload import tinyfamilies

        tinyfamilies.build(TINY[name], target, tokenizer, vocab)
        return
    end = vocab["<|endoftext|>"]
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=end, pad_token_id=end, vocab_size=len(vocab),
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=77, layer_norm_eps=1e-5))
    unet = UNet2DConditionModel(
        sample_size=SAMPLE_SIZE, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 32), norm_num_groups=32,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(target)


def ensure(cache: Path, name: str = "tiny") -> Path:
    """A tiny model's folder under the cache dir (``name``: tiny, tiny-sdxl, tiny-sd3, tiny-flux), built on first
    use (atomically: build, then rename)."""
    version = TINY_VERSION if name == "tiny" else FAMILY_VERSION
    target = Path(cache) / "models" / f"{name}-v{version}"
    if (target / "model_index.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        build(staging, name)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "model_index.json").exists():  # not a concurrent builder that won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
