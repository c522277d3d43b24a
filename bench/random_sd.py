"""Build a random-weight Stable Diffusion with SD 1.5's architecture (~1 B parameters) into a folder.

For measuring on a real GPU where no weights can be downloaded: the compute per step is SD 1.5's,
the pictures are noise. Loaded like any model: ``[workload] model = "/path/to/folder"``.

    python bench/random_sd.py OUT_DIR
"""

import json
import sys
import tempfile
from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from sweepd.workload.tiny import _byte_vocab


def build(target: Path) -> None:
    torch.manual_seed(0)
    vocab = _byte_vocab()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n")
        tok = CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"), model_max_length=77)
    end = vocab["<|endoftext|>"]
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), bos_token_id=vocab["<|startoftext|>"],
                                        eos_token_id=end, pad_token_id=end, hidden_size=768,
                                        intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                                        max_position_embeddings=77, hidden_act="quick_gelu"))
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=512)
    sched = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True)
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text, tokenizer=tok, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(target)
    n = sum(p.numel() for m in (unet, vae, text) for p in m.parameters())
    print(f"built {target}: {n / 1e6:.0f} M parameters")


if __name__ == "__main__":
    build(Path(sys.argv[1]))
