"""Config blocks shared by the experiment files in ``configs/``.

Every key a task reads exists in its config file, so ``--config.key=value`` overrides are
checked against it: a misspelt key is an error, not a silent no-op.
"""

from __future__ import annotations

import ml_collections

from genres_jax.data.offline_dirs import FASHION_MNIST_DIR


def base_config() -> ml_collections.ConfigDict:
    """Keys every run has."""
    config = ml_collections.ConfigDict()
    config.task = ""
    config.seed = 0
    config.batch_size = 128
    config.eval_batch_size = 500
    config.total_steps = 10_000
    config.log_every = 100
    config.eval_every = 1_000
    config.checkpoint_every = 1_000
    config.keep_checkpoints = 3
    config.num_samples = 64
    # Compute dtype of the models (`genres_jax.train.precision`): "auto" = bfloat16 on GPU/TPU,
    # float32 on CPU; parameters and optimizer states are float32 whatever it is.
    config.precision = "auto"
    # Device mesh: mesh.model > 1 shards parameters and optimizer states over a "model" axis of
    # that size (FSDP-style, for large models); 1 = pure data parallelism.
    config.mesh = ml_collections.ConfigDict({"model": 1})
    config.progress_bar = True
    config.eval_max_records = 0  # 0 = the whole eval split.
    # A step with a NaN or infinity in its loss, metrics or new state is not applied. "skip":
    # count it and go on; "stop": end the run (checkpoint of the last good state) once
    # nonfinite_max_consecutive bad steps in a row are seen (checked every log_every steps).
    config.nonfinite_policy = "skip"
    config.nonfinite_max_consecutive = 20
    # SIGTERM/SIGINT: a checkpoint of the last completed step, then exit 0 within this many
    # seconds (an evaluation in progress is given up); a run still going then exits anyway.
    # Below SLURM's default KillWait and cloud preemption notices (30 s). 0 = no bound.
    config.preemption_grace_s = 20.0
    return config


def fashion_mnist_dataset() -> ml_collections.ConfigDict:
    """Offline Fashion-MNIST (Debian package ``dataset-fashion-mnist``) through TFDS + grain.

    ``name``: ``fashion_mnist_local`` (the project's builder over the local idx files) or any TFDS
    catalog name (``fashion_mnist``, ``mnist``, ``cifar10``, ``celeb_a``, ...).
    """
    return ml_collections.ConfigDict(
        {
            "name": "fashion_mnist_local",
            "kind": "images",
            "data_dir": "",  # TFDS data folder; "" = TFDS's default (~/tensorflow_datasets).
            "source_dir": FASHION_MNIST_DIR,  # Raw idx files of fashion_mnist_local.
            "train_split": "train",
            "eval_split": "test",
            "image_size": 0,  # 0 = as stored; else resized to image_size x image_size.
            "center_crop": False,  # Crop to a centred square first (e.g. celeb_a).
            "cache": True,  # Keep decoded records in memory (small datasets).
            "worker_count": 0,  # grain worker processes; 0 = in the training process.
            "read_threads": 0,
        }
    )


def adam(learning_rate: float, b1: float = 0.9, b2: float = 0.999) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "name": "adam",
            "learning_rate": learning_rate,
            "b1": b1,
            "b2": b2,
            "eps": 1e-8,
            "weight_decay": 0.0,
            "grad_clip_norm": 0.0,
            "schedule": "constant",
            "warmup_steps": 0,
            "decay_steps": (),
            "decay_factor": 0.5,
        }
    )


def gan_settings() -> ml_collections.ConfigDict:
    """The ``gan`` block: non-saturating loss, no gradient penalty, one critic step per generator
    step, EMA of the generator; ``g_fakes`` (`tasks.gan.G_FAKES`) chooses the fakes the generator
    update trains on."""
    return ml_collections.ConfigDict(
        {
            "loss": "nonsaturating",
            "gp_weight": 0.0,
            "n_critic": 1,
            "ema_decay": 0.999,
            "g_fakes": "fresh",
        }
    )


def generative_eval() -> ml_collections.ConfigDict:
    """The ``generative_eval`` block of a GAN/VAE config: FID, KID and precision/recall of
    `evaluation.sample_quality` (also the defaults for configs without one)."""
    return ml_collections.ConfigDict(
        {
            "num_samples": 10_000,  # Generated images per evaluation.
            "batch_size": 500,  # Images per device call (padded to a multiple of the devices).
            "feature_extractor": "",  # "" = the dataset's default; a classifier dir or .npz.
            "reference_split": "",  # "" = dataset.eval_split.
            "reference_max_records": 10_000,  # 0 = the whole split.
            "kid_subset_size": 1_000,
            "pr_k": 3,  # k-th nearest neighbour radius of precision/recall.
            "iw_samples": 64,  # VAE: importance samples per test image.
            "iw_max_records": 0,  # VAE: test images for the bound; 0 = the whole split.
            "seed": 0,
        }
    )


def gan_config(
    model: str, *, features: int = 64, batch_size: int = 128, sample_quality: bool = True
) -> ml_collections.ConfigDict:
    """A GAN run on offline Fashion-MNIST: ``model`` (mlp | dcgan) with the DCGAN paper's
    training (z 100, Adam 2e-4 with beta1 0.5, non-saturating loss) and, with
    ``sample_quality``, FID/KID/precision/recall (shipped Fashion-MNIST classifier) at every
    evaluation; configs change what differs (data, sizes, schedule)."""
    config = base_config()
    config.task = "gan"
    config.batch_size = batch_size
    config.dataset = fashion_mnist_dataset()
    config.model = ml_collections.ConfigDict(
        {
            "name": model,
            "latent_dim": 100,
            "features": features,  # DCGAN only.
            "d_norm": "batch",  # DCGAN only.
            "conv_form": "auto",  # DCGAN only: transposed convs as matmuls on the CPU.
            "g_hidden": (128, 256),  # MLP only.
            "d_hidden": (256, 128),  # MLP only.
        }
    )
    config.gan = gan_settings()
    config.g_optimizer = adam(2e-4, b1=0.5)
    config.d_optimizer = adam(2e-4, b1=0.5)
    if sample_quality:
        config.generative_eval = generative_eval()
    return config


def sr_photos_dataset(lr_patch_size: int = 48) -> ml_collections.ConfigDict:
    """HR photos -> LR/HR pairs (MATLAB bicubic) for super-resolution.

    ``name``: ``lomiri_photos_local`` (15 photographs of Debian's Lomiri wallpaper packages,
    offline default), ``sr_photos_local`` (scikit-image's RGB photographs), ``hr_image_folder``
    (``train_dir`` / ``validation_dir`` folders of HR images, e.g. DIV2K's HR PNGs) or a TFDS
    catalog name such as ``div2k/bicubic_x2`` (needs the internet once).
    """
    return ml_collections.ConfigDict(
        {
            "name": "lomiri_photos_local",
            "kind": "sr_pairs",
            "data_dir": "",
            # lomiri_photos_local / sr_photos_local: "" = /usr/share/backgrounds / scikit-image's
            # data folder.
            "source_dir": "",
            "train_dir": "",  # hr_image_folder only.
            "validation_dir": "",  # hr_image_folder only.
            "train_split": "train",
            "eval_split": "validation",
            "lr_patch_size": lr_patch_size,
            "augment": True,  # Random flips and 90-degree rotations.
            # The photo of each training patch: "area" (in proportion to its area) | "image".
            "patch_sampling": "area",
            "cache": True,  # Keep LR/HR pairs in memory after they are first made.
            "worker_count": 0,
            "read_threads": 0,
            "image_size": 0,  # Unused by SR pairs.
            "center_crop": False,  # Unused by SR pairs.
        }
    )


def sr_eval() -> ml_collections.ConfigDict:
    """Whole-image SR validation: tiled inference, PSNR/SSIM on RGB and Y."""
    return ml_collections.ConfigDict(
        {
            "tile": 192,  # LR core tile; 0 = whole images (one compilation per size).
            "overlap": -1,  # LR pixels; -1 = the model's receptive radius (exact tiling).
            "batch_size": 1,
            "crop_border": -1,  # -1 = the scale, as SR papers crop.
            "panels": 2,  # Validation images shown as bicubic | model | HR panels.
            "panel_size": 96,
            "max_images": 0,  # 0 = the whole validation split.
            # Which validated weights best/ keeps: auto | latest | psnr_y | ssim_y | psnr_rgb |
            # ssim_rgb | lpips (genres_jax.evaluation.sr_protocol.best_metric; auto = Y-PSNR, or
            # for GAN training LPIPS with weights, else the latest).
            "best_metric": "auto",
            # An LPIPS weights file (genres_jax.evaluation.lpips): adds LPIPS to validation.
            "lpips_weights": "",
        }
    )


def sr_config(model: str, scale: int) -> ml_collections.ConfigDict:
    """A super-resolution run: L1 loss, Adam, EMA, best checkpoint by validation Y-PSNR."""
    config = base_config()
    config.task = "sr"
    config.scale = scale
    config.batch_size = 16
    config.model = ml_collections.ConfigDict({"name": model, "overrides": {}})
    config.loss = ml_collections.ConfigDict({"name": "l1", "charbonnier_eps": 1e-3})
    config.ema_decay = 0.999
    config.optimizer = adam(1e-4)
    config.dataset = sr_photos_dataset()
    config.sr_eval = sr_eval()
    config.init_from = ""  # A workdir whose best parameters initialise the model.
    return config


def gan_sr_config(generator: str, discriminator: str, scale: int) -> ml_collections.ConfigDict:
    """A GAN super-resolution run (task ``gan_sr``): ESRGAN's losses and optimizers by default.

    Generator loss ``pixel_weight * L1 + perceptual_weight * VGG19 + adversarial_weight * GAN``;
    see `genres_jax.tasks.gan_sr`. The perceptual term needs ``loss.vgg_weights`` (a VGG19 weight
    file, see `genres_jax.models.vgg`) unless ``loss.perceptual_weight`` is 0.
    """
    config = base_config()
    config.task = "gan_sr"
    config.scale = scale
    config.batch_size = 16
    config.model = ml_collections.ConfigDict({"name": generator, "overrides": {}})
    # "vgg" (SRGAN/ESRGAN; its input_size defaults to the HR patch) or "unet" (Real-ESRGAN).
    config.discriminator = ml_collections.ConfigDict({"name": discriminator, "overrides": {}})
    config.loss = ml_collections.ConfigDict(
        {
            "pixel": "l1",  # l1 | charbonnier
            "charbonnier_eps": 1e-3,
            "pixel_weight": 1e-2,
            "perceptual_weight": 1.0,
            # VGG19 layer -> weight; convK_L is the conv output before its ReLU, reluK_L after.
            "perceptual_layers": {"conv5_4": 1.0},
            "perceptual_distance": "l1",  # l1 | l2
            "vgg_weights": "",  # .safetensors / .npz of torchvision's vgg19 'features.*'.
            "adversarial": "relativistic",  # vanilla | relativistic | hinge
            "adversarial_weight": 5e-3,
        }
    )
    config.ema_decay = 0.999
    config.g_optimizer = adam(1e-4, b2=0.99)
    config.d_optimizer = adam(1e-4, b2=0.99)
    # kind: "bicubic" (LR from the input pipeline) or "realesrgan" (made on the device from the
    # HR crops); overrides: fields of genres_jax.ops.degradations.DegradationConfig.
    # pool_size: pairs mixed across steps (genres_jax.tasks.pair_pool), 0 = none; validation:
    # "bicubic" LR or "degraded" as in training, by keys fixed by validation_seed.
    config.degradation = ml_collections.ConfigDict(
        {
            "kind": "bicubic",
            "overrides": {},
            "pool_size": 0,
            "validation": "bicubic",
            "validation_seed": 0,
        }
    )
    # Unsharp masking of HR (genres_jax.ops.sharpen) and which images use it instead of HR.
    config.sharpen = ml_collections.ConfigDict(
        {
            "weight": 0.5,
            "radius": 50,
            "threshold": 10.0,
            "degradation_input": False,
            "pixel_target": False,
            "perceptual_target": False,
            "adversarial_target": False,
        }
    )
    config.dataset = sr_photos_dataset(lr_patch_size=32)
    config.sr_eval = sr_eval()
    config.init_from = ""  # A workdir (e.g. a PSNR-trained run) whose best weights start G.
    return config


def realesrgan_config(scale: int = 4) -> ml_collections.ConfigDict:
    """Real-ESRGAN's published recipe (`configs/realesrgan_x4.py` documents it) at ``scale``.

    RRDBNet + U-Net discriminator, batch 48 of 256x256 HR crops, on-device second-order
    degradations with a 720-pair pool, sharpened degradation input and pixel/perceptual
    targets, L1 + VGG19 perceptual + 0.1 vanilla GAN, validation on degraded LR.
    """
    config = gan_sr_config("rrdbnet", "unet", scale=scale)
    config.batch_size = 48
    config.total_steps = 400_000
    config.log_every = 1_000
    config.eval_every = 10_000
    config.checkpoint_every = 10_000
    config.dataset.lr_patch_size = 256 // scale
    config.degradation.kind = "realesrgan"
    config.degradation.pool_size = 720
    config.degradation.validation = "degraded"
    config.sharpen.degradation_input = True
    config.sharpen.pixel_target = True
    config.sharpen.perceptual_target = True
    config.loss.pixel_weight = 1.0
    config.loss.perceptual_weight = 1.0
    config.loss.perceptual_layers = ml_collections.ConfigDict(
        {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
    )
    config.loss.adversarial = "vanilla"
    config.loss.adversarial_weight = 0.1
    return config


def scale_argument(arg: str, supported: tuple[int, ...]) -> int:
    """The scale a config file's argument names (``configs/span.py:x4`` -> 4).

    Raises ValueError naming the supported scales for anything else.
    """
    text = str(arg).strip().lower().removeprefix("x")
    if text.isdigit() and int(text) in supported:
        return int(text)
    valid = ", ".join(f"x{s}" for s in supported)
    raise ValueError(f"unknown scale argument {arg!r}; this config takes one of {valid}")


def efficient_sr_config(model: str, scale: int) -> ml_collections.ConfigDict:
    """A small SR network trained for speed: L1, Adam with warm-up and cosine decay, batch 16 of
    48x48 LR patches, validation every 1,000 steps (these train on a CPU in minutes to an hour)."""
    config = sr_config(model, scale)
    config.total_steps = 20_000
    config.log_every = 200
    config.eval_every = 1_000
    config.checkpoint_every = 1_000
    config.dataset.lr_patch_size = 48
    config.optimizer.learning_rate = 5e-4
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_steps = 500
    return config
