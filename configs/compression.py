r"""Learned image compression with the feature-identity loss (patent 004).

    python launch.py --config=configs/compression.py:quick --workdir=runs/comp_fi
    python launch.py --config=configs/compression.py:quick,plain --workdir=runs/comp_plain
    # successive compression alternating two rate points (variable rate)
    python launch.py --config=configs/compression.py:quick --workdir=runs/comp_fi --mode=eval \
        --config.eval.variable_with=runs/comp_fi_q1
    # image -> bitstream -> image
    python launch.py --config=configs/compression.py:quick --workdir=runs/comp_fi --mode=predict \
        --input=photo.png --output=photo.rjx
    python launch.py --config=configs/compression.py:quick --workdir=runs/comp_fi --mode=predict \
        --input=photo.rjx --output=decoded.png

Variants (``:arg``, comma-separated):
  (none)     the patent's model: scale hyperprior, CompressAI's (N, M) for the
             quality, 256 crops, batch 8, Adam 1e-4, λ2 = 1 (L_FI). Sized for a GPU.
  q1 .. q8   the rate point: λ1 = λ_q·255² with CompressAI's MSE λ table
             (0.0018 … 0.18); default q3. q6-q8 use (N, M) = (192, 320).
  plain      λ2 = 0: the model without the feature-identity loss.
  factorized the factorized prior (Ballé 2017) instead of the hyperprior.
  meanscale  the mean-scale hyperprior (Minnen et al. 2018 without its context
             model; CompressAI's mbt2018-mean): h_s predicts μ and σ.
  msssim     L_D = 1 − MS-SSIM (RGB) with CompressAI's MS-SSIM λ for the
             quality (2.40 … 220.0); crops of at least 192 (five scales).
  quick      a 2-core CPU demo (<= 10 min): (N, M) = (32, 48), 128 crops of
             ../shared/data/sun_hays80 (the builtin photos when absent),
             batch 4, Adam 1e-3, 2,000 steps; Kodak eval with SIC over 50
             cycles on the first 6 images. About JPEG's PSNR at its rate, no cast.
  cpu        quick trained 4x longer (8,000 steps, lr x0.1 for the last 800;
             about 20 min of training + 4.5 min of evaluation on 2 cores):
             2 dB above JPEG at q3 (README, "Measured").
  test       tiny shapes for the test suite.
Every variant codes each image's mean colour on the side (model.mean_removal) and trains f_d on rounded
latents (model.mixed_quantization: more stable under successive compression).
"""

import ml_collections

from configs.base import quick_run, run_config, source, tiny_run, validation_fields, variants

TRAIN_IMAGES = "astronaut,chelsea,coffee,rocket,grace_hopper,camera,brick,gravel,grass,clock,coins,page"
LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)  # CompressAI's MSE table
MS_SSIM_LAMBDAS = (2.40, 4.58, 8.73, 16.64, 31.73, 60.50, 115.37, 220.0)  # CompressAI's MS-SSIM table
VARIANTS = ("quick", "cpu", "test", "plain", "factorized", "meanscale", "msssim") + tuple(f"q{i}" for i in range(1, 9))


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    args = variants(arg, VARIANTS, "configs/compression.py")
    quality = next((int(a[1:]) for a in args if a[0] == "q" and a[1:].isdigit()), 3)

    c = run_config("compression", total_steps=1_000_000, batch_size=8)
    c.quality = quality

    c.model = ml_collections.ConfigDict()
    # 'hyperprior' (scale) | 'meanscale' (mean and scale) | 'factorized'
    c.model.prior = next((p for p in ("factorized", "meanscale") if p in args), "hyperprior")
    c.model.n, c.model.m = (128, 192) if quality <= 5 else (192, 320)
    # each image's mean colour coded on the side (24 bits) and removed before f_e; False: the patent's bare model
    c.model.mean_removal = True
    # f_d trained on straight-through rounded latents, as it decodes them (the rate term keeps the noise; Minnen &
    # Singh 2020). Successive compression: 50-cycle drop on Kodak 6.3 and 11.1 dB against plain's 15.2 and 16.9
    # (quick, seeds 0 and 1; docs/methods/compression.md). False: f_d trained on noisy latents, as the patent.
    c.model.mixed_quantization = True

    c.loss = ml_collections.ConfigDict()
    c.loss.distortion = "mse"  # L_D: 'mse' (on [0, 1]) | 'ms_ssim' (1 − MS-SSIM; crops >= 176)
    c.loss.lambda1 = LAMBDAS[quality - 1] * 255.0**2  # weight of L_D (MSE: CompressAI's λ_q·255²)
    c.loss.lambda2 = 0.0 if "plain" in args else 1.0  # weight of L_FI (the patent's example: 1)
    c.loss.fi_norm = "mse"  # 'mse' (the patent's [0078]) or 'l2' (Eq. 5's ‖F0 − F1‖₂ per image)
    # f_q of F0, F1 in L_FI: 'noise' (one shared sample) | 'ste' (rounding, straight-through) | 'center' (F0 = the
    # symbols ŷ, F1 = f_e(f_rc∘f_d(ŷ)) unrounded: the re-encoding pulled to the centre of ŷ's bin)
    c.loss.fi_quant = "noise"
    c.loss.fi_passes = 1  # L_FI over this many re-encodings through f_e∘f_rc∘f_d (2: also the second pass)

    c.optim = ml_collections.ConfigDict(dict(lr=1e-4, aux_lr=1e-3, clip=1.0, decay_at=0.9, decay=0.1))

    c.data = ml_collections.ConfigDict()
    c.data.crop = 256
    c.data.threads = 0  # grain read threads; 0: one per CPU core (common.data.pipeline.read_threads)
    # real training wants a large photo set: --config.data.train.kind=folder --config.data.train.path=DIR
    c.data.train = source(TRAIN_IMAGES)

    c.eval = ml_collections.ConfigDict()
    validation_fields(c)
    c.eval.data = ""  # '' = ../shared/data/kodak when present, else builtin photos
    c.eval.max_images = 0  # 0 = all
    c.eval.jpeg_qualities = (2, 3, 5, 10, 20, 30, 50, 70, 90)
    c.eval.sic_cycles = 50
    c.eval.sic_images = 0  # SIC on the first N images (0 = all)
    c.eval.sic_shifts = 4  # one-pixel-shifted crops of the first image (offsets 0..N−1)
    c.eval.variable_with = ""  # another compression run: SIC alternating it and this model

    if "quick" in args or "cpu" in args:
        quick_run(c, 8000 if "cpu" in args else 2000)
        c.batch_size = 4
        c.model.n, c.model.m = 32, 48
        c.optim.lr = 1e-3
        c.data.crop = 128
        c.data.train.prefer_shared = "sun_hays80"  # scene photos when ../shared/data is there
        c.data.train.subset = "train"  # 72 of its 80: the other 8 are the validation photos (eval.every)
        c.eval.sic_images = 6
    if "test" in args:
        tiny_run(c)
        c.model.n, c.model.m = 8, 12
        c.optim.lr = 1e-3
        c.data.crop = 64
        c.data.threads = 1
        c.data.train = source("astronaut,camera")
        c.eval.data = "builtin:astronaut"
        c.eval.jpeg_qualities = (10, 50)
        c.eval.sic_cycles = 3
        c.eval.sic_shifts = 2
    if "msssim" in args:  # L_D = 1 − MS-SSIM with CompressAI's MS-SSIM λ; five scales need crops >= 176
        c.loss.distortion = "ms_ssim"
        c.loss.lambda1 = MS_SSIM_LAMBDAS[quality - 1]
        c.data.crop = max(c.data.crop, 192)
    return c
