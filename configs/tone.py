r"""Naturalness-preserving tone enhancement with an inverse network (patent 001).

    python launch.py --config=configs/tone.py:quick --workdir=runs/tone_quick
    python launch.py --config=configs/tone.py:quick --workdir=runs/tone_quick \
        --mode=predict --input=photo.jpg --output=enhanced.png

Variants (``:arg``, comma-separated):
  (none)  full-width networks (G: 32/64/128 channels, 16 residual blocks),
          256x256 crops, batch 8, Adam 1e-4. Sized for a GPU/TPU.
  quick   a 2-core CPU demo (<= 10 min): G at width 1/4 with 4 residual
          blocks, 64x64 crops, batch 8, 4000 steps, lr 5e-4; evaluation on
          images resized to a 256-pixel long side.
  test    tiny shapes for the test suite.
Ablations of the patent's Fig. 6: ``color`` (λ2 = λ3 = 0: colour only),
``natural`` (λ3 = 0: + naturalness); the default is the full L_G.
"""

import ml_collections

from configs.base import quick_run, run_config, source, tiny_run, validation_fields, variants

INPUT_IMAGES = "astronaut,chelsea,rocket,stereo_motorcycle,coffee"  # tone-degraded at random for training
NATURAL_IMAGES = "astronaut,chelsea,rocket,stereo_motorcycle,coffee"  # unpaired, undegraded crops for D
ABLATIONS = {"color": (0.0, 0.0), "natural": (None, 0.0)}  # (λ2, λ3); None keeps the default


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    args = variants(arg, ("quick", "test", *ABLATIONS), "configs/tone.py")

    c = run_config("tone", total_steps=100_000, batch_size=8)

    c.model = ml_collections.ConfigDict()
    c.model.arch = "authors"  # G: 'authors' (their code: 2 stride-2 convs, residual blocks) | 'patent' (its Fig. 2)
    c.model.width = 1.0  # G channel multiplier (32/64/128 at 1.0)
    c.model.blocks = 16
    c.model.d_width = 1.0
    c.model.inverse_layers = 5  # C has fewer conv layers than G (claims 6-7)
    c.model.inverse_channels = 32

    c.loss = ml_collections.ConfigDict()
    c.loss.color = "mse"  # mse | l1 | ssim (seed [0060])
    c.loss.lambda1 = 1.0  # L_color
    c.loss.lambda2 = 0.01  # L_natural (LSGAN)
    c.loss.lambda3 = 1.0  # L_artifact

    c.optim = ml_collections.ConfigDict(dict(lr=1e-4, b1=0.5, decay=0.5, decay_steps=40_000))

    c.data = ml_collections.ConfigDict()
    c.data.crop = 256  # multiple of 16
    c.data.threads = 0  # grain read threads; 0: one per CPU core (common.data.pipeline.read_threads)
    c.data.input = source(INPUT_IMAGES)
    c.data.natural = source(NATURAL_IMAGES)
    c.data.degrade_inputs = True  # random dark / low-contrast / desaturated curves on training inputs
    c.data.algorithm = "clahe_saturation"  # clahe_saturation | hist_eq | sigmoid_contrast
    c.data.algorithm_params = ml_collections.ConfigDict(dict(clip_limit=0.02, saturation=1.5))

    c.eval = ml_collections.ConfigDict()
    validation_fields(c)
    c.eval.data = ""  # '' = ../shared/data/kodak when present, else builtin:grace_hopper
    c.eval.max_side = 768  # images are resized so that their long side is at most this
    c.eval.seed = 20_000  # seeds of the evaluation tone curves
    c.eval.num_samples = 3
    c.eval.inverse_from = ""  # workdir whose C measures inverse_mse ('' = this run's C)

    if "quick" in args:
        quick_run(c, 4000)
        c.model.width = 0.25
        c.model.blocks = 4
        c.model.d_width = 0.25
        c.model.inverse_channels = 16
        c.optim.lr = 5e-4
        c.optim.decay_steps = 3000
        c.data.crop = 64
        c.eval.max_side = 256
    if "test" in args:
        tiny_run(c)
        c.model.width = 1 / 8
        c.model.blocks = 1
        c.model.d_width = 1 / 8
        c.model.inverse_channels = 4
        c.optim.lr = 1e-3
        c.data.crop = 32
        c.data.threads = 1
        c.data.input.names = "astronaut,chelsea"
        c.data.natural.names = "coffee"
        c.eval.data = "builtin:rocket"
        c.eval.max_side = 64
        c.eval.num_samples = 1
    for a in args:
        if a in ABLATIONS:
            l2, l3 = ABLATIONS[a]
            if l2 is not None:
                c.loss.lambda2 = l2
            c.loss.lambda3 = l3
    return c
