"""The later families' built-in tiny models (``tiny-sdxl``, ``tiny-sd3``, ``tiny-flux``): each family's real diffusers
pipeline class with random weights at toy widths, so its whole code path (two or three text encoders, size
conditioning, an MMDiT or FLUX transformer, flow matching, latent packing) runs on a machine with no network and no
GPU. Built like ``tiny`` (:mod:`sweepd.workload.tiny`): from configs, saved with ``save_pretrained``, loaded like a
downloaded model. T5's tokenizer is a byte-level unigram over printable ASCII (no SentencePiece file to download)."""

from __future__ import annotations

from pathlib import Path

from sweepd.families import Family


def _clip(vocab: dict[str, int], projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    end = vocab["<|endoftext|>"]
    config = CLIPTextConfig(bos_token_id=vocab["<|startoftext|>"], eos_token_id=end, pad_token_id=end,
                            vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_attention_heads=4,
                            num_hidden_layers=2, max_position_embeddings=77, layer_norm_eps=1e-5, projection_dim=32)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _t5():
    """T5's encoder and a tokenizer for it (pad 0, end-of-text 1, as T5 has them)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import T5Config, T5EncoderModel, T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -1.0)] + [(chr(c), -2.0) for c in range(33, 127)]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer = T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                extra_ids=0, model_max_length=256)
    encoder = T5EncoderModel(T5Config(vocab_size=len(pieces), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    return encoder, tokenizer


def _flow_vae():
    """SD3's and FLUX's autoencoder (no quant convs, shift and scale), two blocks: latents 1/2 of the image."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                         layers_per_block=1, norm_num_groups=4, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, use_quant_conv=False, use_post_quant_conv=False,
                         shift_factor=0.0609, scaling_factor=1.5035, sample_size=64)


def build(family: Family, target: Path, clip_tokenizer, vocab: dict[str, int]) -> None:
    from diffusers import (AutoencoderKL, EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler, FluxPipeline,
                           FluxTransformer2DModel, SD3Transformer2DModel, StableDiffusion3Pipeline,
                           StableDiffusionXLPipeline, UNet2DConditionModel)

    if family is Family.SDXL:
        # addition_time_embed_dim x 6 (sizes and crops) + the second encoder's projection: the size conditioning
        unet = UNet2DConditionModel(
            sample_size=32, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=8, transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=80,
            cross_attention_dim=64, norm_num_groups=32)
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64),
                            norm_num_groups=32, down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2)
        scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                           timestep_spacing="leading", steps_offset=1)
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=_clip(vocab, False), text_encoder_2=_clip(vocab, True),
                                         tokenizer=clip_tokenizer, tokenizer_2=clip_tokenizer, unet=unet,
                                         scheduler=scheduler)
    elif family is Family.SD3:
        t5, t5_tokenizer = _t5()
        transformer = SD3Transformer2DModel(sample_size=32, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
                                            attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                            joint_attention_dim=32, pooled_projection_dim=64)
        pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                                        vae=_flow_vae(), text_encoder=_clip(vocab, True), tokenizer=clip_tokenizer,
                                        text_encoder_2=_clip(vocab, True), tokenizer_2=clip_tokenizer,
                                        text_encoder_3=t5, tokenizer_3=t5_tokenizer)
    elif family is Family.FLUX:
        t5, t5_tokenizer = _t5()
        # in_channels: the VAE's 4 latent channels packed 2 x 2; the rotary axes add up to the head's width
        transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                             attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                             pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
        pipe = FluxPipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                            vae=_flow_vae(), text_encoder=_clip(vocab, False), tokenizer=clip_tokenizer,
                            text_encoder_2=t5, tokenizer_2=t5_tokenizer)
    else:
        raise ValueError(f"no tiny model of family {family}")
    pipe.save_pretrained(target)
