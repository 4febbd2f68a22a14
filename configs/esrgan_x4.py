"""ESRGAN x4 (Wang et al. 2018): RRDBNet generator fine-tuned with perceptual and RaGAN losses.

Stage 2 of ESRGAN's two-stage training. Generator loss
``0.01 * L1 + 1.0 * VGG19(conv5_4, before ReLU, L1) + 0.005 * relativistic average GAN``,
VGG-style discriminator on 128x128 HR patches (batch 16, LR 32x32), Adam 1e-4 (beta2 0.99)
for both networks halved at 50k, 100k, 200k and 300k of 400k steps, EMA generator weights
(what validation, ``evaluate`` and ``upscale`` use). Pre-train the generator first
(configs/esrgan_psnr_x4.py) and start from it:

    python train.py --config configs/esrgan_psnr_x4.py --workdir runs/esrgan_psnr_x4
    python train.py --config configs/esrgan_x4.py --workdir runs/esrgan_x4 \\
        --config.init_from=runs/esrgan_psnr_x4 \\
        --config.loss.vgg_weights=vgg19_features.safetensors
    python -m genres_jax.upscale photo.png photo_x4.png --workdir runs/esrgan_x4

The perceptual loss needs ImageNet VGG19 weights, which cannot be downloaded here: make the
file once on a machine with torch and torchvision (a .npz with the same keys works too)::

    python -c "import torchvision, safetensors.torch as st; \\
    m = torchvision.models.vgg19(weights='IMAGENET1K_V1'); \\
    st.save_file({k: v for k, v in m.state_dict().items() if k.startswith('features.')}, \\
    'vgg19_features.safetensors')"

and pass it with ``--config.loss.vgg_weights=PATH``. Without it the run stops at once with a
config error; ``--config.loss.perceptual_weight=0`` trains without that term. Other
objectives: ``--config.loss.adversarial=vanilla|hinge``. Validation keeps the EMA weights with
the best Y-PSNR in <workdir>/best, which is what ``upscale`` loads.
"""

import ml_collections

from genres_jax.train import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.gan_sr_config("rrdbnet", "vgg", scale=4)
    config.total_steps = 400_000
    config.log_every = 1_000
    config.eval_every = 10_000
    config.checkpoint_every = 10_000
    config.dataset.lr_patch_size = 32
    config.loss.pixel_weight = 1e-2
    config.loss.perceptual_weight = 1.0
    config.loss.perceptual_layers = ml_collections.ConfigDict({"conv5_4": 1.0})
    config.loss.adversarial = "relativistic"
    config.loss.adversarial_weight = 5e-3
    for opt in (config.g_optimizer, config.d_optimizer):
        opt.schedule = "step"
        opt.decay_steps = (50_000, 100_000, 200_000, 300_000)
        opt.decay_factor = 0.5
    return config
