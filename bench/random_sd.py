"""Build a random-weight Stable Diffusion with SD 1.5's architecture (~1 B parameters) into a folder.

For measuring on a real GPU where no weights can be downloaded: the compute per step is SD 1.5's,
the pictures are noise. Loaded like any model: ``[workload] model = "/path/to/folder"``.

    python bench/random_sd.py OUT_DIR
    python bench/random_sd.py OUT_DIR --smoke     # the same classes at toy widths: the test suite's run, seconds
"""

import json
import sys
import tempfile
from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from sweepd.workload.tiny import _byte_vocab


# SD 1.5's widths, and the toy ones of the smoke run (the same classes, layers and wiring)
FULL = {"hidden": 768, "ffn": 3072, "heads": 12, "text_layers": 12, "unet": (320, 640, 1280, 1280), "head_dim": 8,
        "vae": (128, 256, 512, 512), "sample": 64}
SMOKE = {"hidden": 32, "ffn": 64, "heads": 2, "text_layers": 2, "unet": (32, 32, 64, 64), "head_dim": 8,
         "vae": (32, 32, 32, 32), "sample": 8}


def build(target: Path, size: dict = FULL) -> int:
    torch.manual_seed(0)
    vocab = _byte_vocab()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n")
        tok = CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"), model_max_length=77)
    end = vocab["<|endoftext|>"]
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), bos_token_id=vocab["<|startoftext|>"],
                                        eos_token_id=end, pad_token_id=end, hidden_size=size["hidden"],
                                        intermediate_size=size["ffn"], num_attention_heads=size["heads"],
                                        num_hidden_layers=size["text_layers"], max_position_embeddings=77,
                                        hidden_act="quick_gelu"))
    unet = UNet2DConditionModel(sample_size=size["sample"], cross_attention_dim=size["hidden"],
                                attention_head_dim=size["head_dim"], block_out_channels=size["unet"],
                                layers_per_block=2, norm_num_groups=min(32, size["unet"][0]))
    vae = AutoencoderKL(block_out_channels=size["vae"], layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=size["sample"] * 8, norm_num_groups=min(32, size["vae"][0]))
    sched = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True)
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text, tokenizer=tok, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(target)
    n = sum(p.numel() for m in (unet, vae, text) for p in m.parameters())
    print(f"built {target}: {n / 1e6:.1f} M parameters")
    return n


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or (len(sys.argv) == 3 and sys.argv[2] != "--smoke"):
        sys.exit("usage: python bench/random_sd.py OUT_DIR [--smoke]")
    build(Path(sys.argv[1]), SMOKE if sys.argv[2:] == ["--smoke"] else FULL)
