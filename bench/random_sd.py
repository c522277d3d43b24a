"""Build a random-weight Stable Diffusion with SD 1.5's architecture (~1 B parameters), or SDXL's, SD3.5-medium's or
FLUX.1's (``--family``), into a folder.

For measuring on a real GPU where no weights can be downloaded: the compute per step is the family's, the pictures
are noise. Loaded like any model: ``[workload] model = "/path/to/folder"``. SD3.5-medium is built without its T5
text encoder (diffusers' SD3 pipeline runs without it: T5's 4.7 B parameters encode the prompt once per image, not
per step); FLUX.1 cannot go without T5 and is built with T5-XXL, 17 B parameters in all (a GPU machine's minutes).

    python bench/random_sd.py OUT_DIR [--family sd|sdxl|sd3|flux]
    python bench/random_sd.py OUT_DIR --smoke     # the same classes at toy widths: the test suite's run, seconds
"""

import argparse
from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from sweepd.workload.tiny import _byte_vocab, _clip_tokenizer


# SD 1.5's widths, and the toy ones of the smoke run (the same classes, layers and wiring)
FULL = {"hidden": 768, "ffn": 3072, "heads": 12, "text_layers": 12, "unet": (320, 640, 1280, 1280), "head_dim": 8,
        "vae": (128, 256, 512, 512), "sample": 64}
SMOKE = {"hidden": 32, "ffn": 64, "heads": 2, "text_layers": 2, "unet": (32, 32, 64, 64), "head_dim": 8,
         "vae": (32, 32, 32, 32), "sample": 8}


def build(target: Path, size: dict = FULL) -> int:
    torch.manual_seed(0)
    vocab = _byte_vocab()
    tok = _clip_tokenizer(vocab)
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


def clip(vocab, hidden, layers, heads, projection=None):
    from transformers import CLIPTextModelWithProjection

    end = vocab["<|endoftext|>"]
    config = CLIPTextConfig(vocab_size=len(vocab), bos_token_id=vocab["<|startoftext|>"], eos_token_id=end,
                            pad_token_id=end, hidden_size=hidden, intermediate_size=hidden * 4,
                            num_attention_heads=heads, num_hidden_layers=layers, max_position_embeddings=77,
                            hidden_act="gelu", projection_dim=projection or hidden)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def vae(channels, latent, sample, **kw):
    return AutoencoderKL(block_out_channels=channels, layers_per_block=2, latent_channels=latent,
                         down_block_types=("DownEncoderBlock2D",) * len(channels),
                         up_block_types=("UpDecoderBlock2D",) * len(channels), sample_size=sample,
                         norm_num_groups=min(32, channels[0]), **kw)


# each family at its published widths, and at toy widths with the same classes and wiring (--smoke)
FAMILY_SIZES = {
    "sdxl": {"full": {"clip_l": (768, 12, 12), "clip_g": (1280, 32, 20), "unet": (320, 640, 1280),
                      "layers": (1, 2, 10), "heads": (5, 10, 20), "time": 256, "vae": (128, 256, 512, 512),
                      "sample": 128},
             "smoke": {"clip_l": (32, 2, 2), "clip_g": (32, 2, 2), "unet": (32, 32, 64), "layers": (1, 1, 1),
                       "heads": (2, 2, 4), "time": 8, "vae": (32, 32, 32, 32), "sample": 8}},
    "sd3": {"full": {"clip_l": (768, 12, 12), "clip_g": (1280, 32, 20), "layers": 24, "heads": 24, "head_dim": 64,
                     "joint": 4096, "caption": 1536, "vae": (128, 256, 512, 512), "sample": 128, "dual": 13},
            "smoke": {"clip_l": (32, 2, 2), "clip_g": (32, 2, 2), "layers": 2, "heads": 2, "head_dim": 16,
                      "joint": 64, "caption": 32, "vae": (32, 32, 32, 32), "sample": 8, "dual": 1}},
    "flux": {"full": {"clip_l": (768, 12, 12), "t5": (4096, 24, 64, 10240), "double": 19, "single": 38,
                      "heads": 24, "head_dim": 128, "rope": (16, 56, 56), "vae": (128, 256, 512, 512), "sample": 128},
             "smoke": {"clip_l": (32, 2, 2), "t5": (32, 2, 4, 64), "double": 1, "single": 1, "heads": 2,
                       "head_dim": 16, "rope": (4, 6, 6), "vae": (32, 32, 32, 32), "sample": 8}},
}


def build_family(family: str, target: Path, smoke: bool) -> int:
    from diffusers import (EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler, FluxPipeline,
                           FluxTransformer2DModel, SD3Transformer2DModel, StableDiffusion3Pipeline,
                           StableDiffusionXLPipeline)

    torch.manual_seed(0)
    z = FAMILY_SIZES[family]["smoke" if smoke else "full"]
    vocab = _byte_vocab()
    tok = _clip_tokenizer(vocab)
    clip_l = clip(vocab, *z["clip_l"])
    if family == "sdxl":
        g = clip(vocab, *z["clip_g"], projection=z["clip_g"][0])
        unet = UNet2DConditionModel(
            sample_size=z["sample"], block_out_channels=z["unet"], layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=z["layers"], attention_head_dim=z["heads"],
            cross_attention_dim=z["clip_l"][0] + z["clip_g"][0], use_linear_projection=True,
            addition_embed_type="text_time", addition_time_embed_dim=z["time"],
            projection_class_embeddings_input_dim=6 * z["time"] + z["clip_g"][0], norm_num_groups=min(32, z["unet"][0]))
        sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="leading", steps_offset=1)
        parts = [clip_l, g, unet, vae(z["vae"], 4, z["sample"] * 8, scaling_factor=0.13025)]
        pipe = StableDiffusionXLPipeline(vae=parts[3], text_encoder=clip_l, text_encoder_2=g, tokenizer=tok,
                                         tokenizer_2=tok, unet=unet, scheduler=sched)
    elif family == "sd3":
        g = clip(vocab, *z["clip_g"], projection=z["clip_g"][0])
        l_proj = clip(vocab, *z["clip_l"], projection=z["clip_l"][0])
        transformer = SD3Transformer2DModel(
            sample_size=z["sample"], patch_size=2, in_channels=16, out_channels=16, num_layers=z["layers"],
            attention_head_dim=z["head_dim"], num_attention_heads=z["heads"], joint_attention_dim=z["joint"],
            caption_projection_dim=z["heads"] * z["head_dim"], pooled_projection_dim=z["clip_l"][0] + z["clip_g"][0],
            pos_embed_max_size=384 if not smoke else 96, qk_norm="rms_norm",
            dual_attention_layers=tuple(range(z["dual"])))
        parts = [l_proj, g, transformer, vae(z["vae"], 16, z["sample"] * 8, use_quant_conv=False,
                                             use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5305)]
        pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                                        vae=parts[3], text_encoder=l_proj, tokenizer=tok, text_encoder_2=g,
                                        tokenizer_2=tok, text_encoder_3=None, tokenizer_3=None)
    elif family == "flux":
        from sweepd.workload.tinyfamilies import _t5
        from transformers import T5Config, T5EncoderModel

        _, t5_tok = _t5()
        d, layers, heads, ffn = z["t5"]
        t5 = T5EncoderModel(T5Config(vocab_size=t5_tok.vocab_size, d_model=d, d_kv=64 if not smoke else 8, d_ff=ffn,
                                     num_layers=layers, num_heads=heads, pad_token_id=0, eos_token_id=1,
                                     feed_forward_proj="gated-gelu", decoder_start_token_id=0))
        transformer = FluxTransformer2DModel(
            patch_size=1, in_channels=64, num_layers=z["double"], num_single_layers=z["single"],
            attention_head_dim=z["head_dim"], num_attention_heads=z["heads"], joint_attention_dim=d,
            pooled_projection_dim=z["clip_l"][0], guidance_embeds=True, axes_dims_rope=list(z["rope"]))
        parts = [clip_l, t5, transformer, vae(z["vae"], 16, z["sample"] * 8, use_quant_conv=False,
                                              use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611)]
        pipe = FluxPipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                            vae=parts[3], text_encoder=clip_l, tokenizer=tok, text_encoder_2=t5, tokenizer_2=t5_tok)
    else:
        raise SystemExit(f"--family {family}: sd, sdxl, sd3 or flux")
    if not smoke:
        pipe.to(dtype=torch.float16)  # what the GPU runs; half the bytes to write and load
    pipe.save_pretrained(target)
    n = sum(p.numel() for m in parts for p in m.parameters())
    print(f"built {target}: {family}, {n / 1e6:.1f} M parameters")
    return n


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="a random-weight Stable Diffusion of each family, for real GPUs")
    ap.add_argument("out", type=Path)
    ap.add_argument("--family", default="sd", choices=["sd", "sdxl", "sd3", "flux"])
    ap.add_argument("--smoke", action="store_true", help="toy widths, the same classes: seconds on a CPU")
    a = ap.parse_args()
    if a.family == "sd":
        build(a.out, SMOKE if a.smoke else FULL)
    else:
        build_family(a.family, a.out, a.smoke)
