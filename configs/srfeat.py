r"""SRFeat: super-resolution with an image and a feature discriminator (patent 000).

    # stage 1: MSE pre-training (SRFeat_M)
    python launch.py --config=configs/srfeat.py:quick --workdir=runs/srfeat_m
    # stage 2: adversarial fine-tuning from stage 1 (SRFeat_IF)
    python launch.py --config=configs/srfeat.py:quick --workdir=runs/srfeat_if \
        --config.stage=gan --config.init_from=runs/srfeat_m
    # x4 Y-PSNR/SSIM vs bicubic on Set5 + Set14 (../shared/data when present)
    python launch.py --config=configs/srfeat.py:quick --workdir=runs/srfeat_m --mode=eval

Variants (``:arg``, comma-separated):
  (none)  the authors' settings: LR 74 / HR 296 patches, batch 9, generator
          16 blocks x 128 channels, full discriminators, full-width VGG
          (ImageNet VGG-16 conv5_3, or VGG-19 conv5_4 with vgg19_weights);
          pretrain 20 epochs, GAN 5 epochs of their ~100k DIV2K patches
          (x0.1 every 10 / 2 epochs). Sized for a GPU/TPU.
  quick   a 2-core CPU demo (<= 10 min per stage): a SMALLER generator
          (8 blocks x 32 channels), LR 16 / HR 64 patches, batch 16,
          discriminators at width 1/4, the pretrained full-width VGG;
          pretrain 4000 steps at lr 1e-3, GAN 500 steps.
  test    tiny shapes for the test suite (random width-1/16 VGG).
  gan     shorthand for --config.stage=gan (stage 2; needs --config.init_from).
  feat    feature discriminator only (no image D), perceptual loss kept.
  first   the patent's first embodiment literally: the generator minimises the
          feature discriminator's error alone (no image D, L_p weight 0).
  x2, x3  scale 2 or 3 instead of 4.
"""

import ml_collections

from configs.base import quick_run, run_config, source, tiny_run, validation_fields, variants, vgg_fields

# Builtin natural photos (colour and grey) for training; Set5/Set14 (../shared/data) are the evaluation sets.
TRAIN_IMAGES = "astronaut,chelsea,coffee,rocket,stereo_motorcycle,camera,moon,grass,gravel,brick,clock,coins"
VARIANTS = ("quick", "test", "gan", "feat", "first", "x2", "x3")
# What the every-method checks build (bf16, the device mesh): the GAN stage, whose step holds the generator's.
CHECKED_VARIANTS = ("test,gan",)
# The stages a throughput table times, each with the overrides of a run that starts from nothing.
STAGES = {"": [], "gan": ["--config.init_from=scratch"]}
EPOCH = 100_000 // 9  # steps per epoch of the authors' ~100k patches at batch 9


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    args = variants(arg, VARIANTS, "configs/srfeat.py")

    c = run_config("srfeat", total_steps=0, batch_size=9)  # total_steps 0 = the stage's default
    c.stage = "pretrain"  # pretrain (pixel MSE, SRFeat_M) | gan (perceptual + adversarial)
    c.init_from = ""  # gan stage: workdir of a pretrain run ('scratch' = random generator)
    vgg_fields(c)

    c.model = ml_collections.ConfigDict()
    c.model.scale = 4  # 2, 3 or 4
    c.model.channels = 128
    c.model.blocks = 16
    c.model.long_skip = True  # the patent's weighted sum of all block outputs (claim 5)

    c.disc = ml_collections.ConfigDict()
    c.disc.image = True  # image discriminator (False: the patent's first embodiment)
    c.disc.feature = True  # feature discriminator on φ = VGG-19 conv5_4 / 12.75 (VGG-16: conv5_3)
    c.disc.width = 1.0  # channel multiplier of both discriminators
    c.disc.schedule = "alternate"  # alternate (D step, then G against the new D) | simultaneous

    c.loss = ml_collections.ConfigDict()
    c.loss.perceptual = 1.0  # weight of L_p in stage 2 (0 with `first`: the feature GAN alone)
    c.loss.adv_image = 1e-3
    c.loss.adv_feature = 1e-3
    c.loss.d_weight = 1e-3  # weight of the discriminator losses (authors' code)
    c.loss.pixel = 0.0  # weight of a pixel MSE kept in stage 2 (a probe; the patent's stage 2 has none)
    c.loss.clip_vgg = False  # clip SR to [0, 1] before VGG (a probe; the authors' code clips)
    # φ = VGG features x this; 0 = per backbone: 1/12.75 (authors, Caffe VGG-19), 1.0 (torch VGG-16, rms ≈ 1)
    c.loss.feature_scale = 0.0
    c.loss.vgg_width = 1.0  # VGG channel multiplier (1.0 for pretrained weights; < 1 needs backbone=random)

    # Adam per stage (the generator and both discriminators), lr x decay every decay_steps
    c.pretrain = ml_collections.ConfigDict(dict(steps=20 * EPOCH, lr=1e-4, b1=0.9, eps=1e-8, decay=0.1))
    c.pretrain.decay_steps = 10 * EPOCH
    c.gan = ml_collections.ConfigDict(dict(steps=5 * EPOCH, lr=1e-4, b1=0.9, eps=1e-10, decay=0.1))
    c.gan.decay_steps = 2 * EPOCH

    c.data = ml_collections.ConfigDict()
    c.data.lr_size = 74  # LR patch side; HR = lr_size * scale
    c.data.quantize_lr = True  # round LR to 8 bits, like LR images stored as PNG
    c.data.threads = 0  # grain read threads; 0: one per CPU core (common.data.pipeline.read_threads)
    c.data.train = source(TRAIN_IMAGES)

    c.eval = ml_collections.ConfigDict()
    validation_fields(c)
    # comma-separated sets: a folder path, or builtin:NAME+NAME; '' = Set5 and Set14 from
    # ../shared/data when present, else builtin:grace_hopper (not a training image)
    c.eval.data = ""
    c.eval.bucket = 32  # LR inputs are reflect-padded to multiples of this (fewer compilations)
    # LR images with a side over tile + 2·overlap go through G in windows of that side (memory: ~16 GB per
    # LR megapixel at full width on CPU, so a 1080p frame whole would not fit in 24 GB). The overlap covers
    # G's receptive-field radius (38 LR pixels at 16 blocks), so the result is the whole-image one. 0 = whole.
    c.eval.tile = 512
    c.eval.tile_overlap = 64
    c.eval.num_samples = 3  # images shown in eval/samples.png

    if "quick" in args:
        c.pretrain.update(steps=4000, lr=1e-3, decay_steps=3000)
        c.gan.update(steps=500, decay_steps=350)
        quick_run(c, 0)
        c.batch_size = 16
        c.model.channels = 32
        c.model.blocks = 8
        c.disc.width = 0.25
        c.data.lr_size = 16
    if "test" in args:
        c.pretrain.update(steps=4, lr=1e-3)
        c.gan.steps = 4
        tiny_run(c)
        c.total_steps = 0
        c.model.channels = 8
        c.model.blocks = 3
        c.disc.width = 1 / 16
        c.backbone = "random"
        c.loss.vgg_width = 1 / 16
        c.data.lr_size = 8
        c.data.threads = 1
        c.data.train.names = "astronaut,chelsea"
        c.eval.data = "builtin:coffee"
        c.eval.num_samples = 1
    if "x2" in args:
        c.model.scale = 2
    if "x3" in args:
        c.model.scale = 3
    if "feat" in args or "first" in args:
        c.disc.image = False
    if "first" in args:
        c.loss.perceptual = 0.0
    if "gan" in args:
        c.stage = "gan"
        if "test" in args:
            c.init_from = "scratch"
    return c
