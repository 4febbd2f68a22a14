"""SRGAN x4 (Ledig et al. 2017): SRResNet generator, VGG content loss and a standard GAN.

Generator loss as the paper's SRGAN-VGG54: ``0.006 * VGG19(relu5_4, MSE)`` (the paper's
features rescaled by 1/12.75, i.e. the MSE times 1/12.75^2) ``+ 0.001 * vanilla GAN``, no
pixel loss; SRGAN's VGG-style discriminator on 96x96 HR patches (batch 16, LR 24x24); Adam
1e-4 for 100k steps then 1e-5 for 100k; EMA generator weights. The SRResNet here has no batch
norm (as later SRResNet variants); 16 residual blocks, 64 features.

Start from a PSNR-trained SRResNet, as the paper does:

    python train.py --config configs/esrgan_psnr_x4.py --workdir runs/srresnet_x4 \\
        --config.model.name=srresnet --config.dataset.lr_patch_size=24
    python train.py --config configs/srgan_x4.py --workdir runs/srgan_x4 \\
        --config.init_from=runs/srresnet_x4 --config.loss.vgg_weights=vgg19_features.safetensors

The VGG19 weight file (.safetensors or .npz of torchvision's vgg19 ``features.*`` state dict)
is made once on a machine with torch and torchvision, with the command in
configs/esrgan_x4.py's docstring (also printed by the config error a run without it stops
with). ``--config.loss.perceptual_weight=0 --config.loss.pixel_weight=1`` trains without it.
"""

import ml_collections

from genres_jax.train import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.gan_sr_config("srresnet", "vgg", scale=4)
    config.total_steps = 200_000
    config.log_every = 1_000
    config.eval_every = 10_000
    config.checkpoint_every = 10_000
    config.dataset.lr_patch_size = 24
    config.loss.pixel_weight = 0.0
    config.loss.perceptual_weight = 0.006
    config.loss.perceptual_layers = ml_collections.ConfigDict({"relu5_4": 1.0})
    config.loss.perceptual_distance = "l2"
    config.loss.adversarial = "vanilla"
    config.loss.adversarial_weight = 1e-3
    for opt in (config.g_optimizer, config.d_optimizer):
        opt.b2 = 0.999
        opt.schedule = "step"
        opt.decay_steps = (100_000,)
        opt.decay_factor = 0.1
    return config
