"""Real-ESRGAN x4 (Wang et al. 2021): blind SR trained on synthetic real-world degradations.

LR images are made on the device, in the train step, from the HR crops with Real-ESRGAN's
second-order degradation (blur, resize, Gaussian/Poisson noise, JPEG, twice, then sinc filter;
`genres_jax.ops.degradations`, its defaults the published x4 recipe; change fields with
``--config.degradation.overrides="{'final_sinc_prob': 0.5}"``). RRDBNet generator, U-Net
discriminator with spectral normalisation (per-pixel logits). Generator loss
``1.0 * L1 + 1.0 * VGG19 perceptual (L1 on conv1_2, conv2_2 x 0.1, conv3_4, conv4_4,
conv5_4 x 1, before ReLU) + 0.1 * vanilla GAN``; Adam 1e-4 (beta2 0.99) for both, batch 48 of
256x256 HR crops (LR 64x64), 400k steps, EMA 0.999 generator weights (what validation,
``evaluate`` and ``upscale`` use). As published, HR is unsharp-masked (``config.sharpen``) for
the degradation input and the pixel and perceptual targets (the discriminator sees plain HR),
and pairs are mixed across steps through a pool (``degradation.pool_size``: 720 pairs, the
four 180-pair pools of the published 4-GPU run as one global pool; a multiple of the batch).

Validation upscales each validation image degraded as in training, with a key fixed per image
(``degradation.validation='degraded'``), so its PSNR/SSIM measure the blind task; with
``--config.sr_eval.lpips_weights=FILE`` (`genres_jax.evaluation.lpips`) it adds LPIPS and
``best/`` keeps the weights with the lowest LPIPS, otherwise the latest validated ones.
<workdir>/samples and TensorBoard show validation panels (LR upscaled by bicubic | model | HR) and
``train_pairs`` grids of the degraded training LR (nearest-upscaled) | model | sharpened HR target.

Two stages, as published. Real-ESRNet (L1 only, same degradations, Adam 2e-4), then the GAN:

    python train.py --config configs/realesrgan_x4.py --workdir runs/realesrnet_x4 \\
        --config.loss.perceptual_weight=0 --config.loss.adversarial_weight=0 \\
        --config.loss.pixel_weight=1 --config.g_optimizer.learning_rate=2e-4 \\
        --config.total_steps=1000000
    python train.py --config configs/realesrgan_x4.py --workdir runs/realesrgan_x4 \\
        --config.init_from=runs/realesrnet_x4 \\
        --config.loss.vgg_weights=vgg19_features.safetensors
    python -m genres_jax.upscale photo.jpg photo_x4.png --workdir runs/realesrgan_x4

The perceptual loss needs ImageNet VGG19 weights (.safetensors or .npz of torchvision's vgg19
``features.*`` state dict), made once on a machine with torch and torchvision::

    python -c "import torchvision, safetensors.torch as st; \\
    m = torchvision.models.vgg19(weights='IMAGENET1K_V1'); \\
    st.save_file({k: v for k, v in m.state_dict().items() if k.startswith('features.')}, \\
    'vgg19_features.safetensors')"

Without ``--config.loss.vgg_weights`` the run stops at once with a config error. The offline
photos are small for 256x256 crops: real runs use DIV2K/Flickr2K
(``--config.dataset.name=hr_image_folder --config.dataset.train_dir=DIR``).
"""

import ml_collections

from genres_jax.train import defaults


def get_config() -> ml_collections.ConfigDict:
    return defaults.realesrgan_config(scale=4)
