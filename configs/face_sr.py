r"""Self-supervised x4 face super-resolution (paper 003).

    python launch.py --config=configs/face_sr.py:quick --workdir=runs/face_quick
    # the paper's protocol on ../shared/data/celeba_hq (1024 faces -> 256 inputs)
    python launch.py --config=configs/face_sr.py:quick,celeba --workdir=runs/face_celeba

Variants (``:arg``, comma-separated):
  (none)  the paper: 256 input faces, batch 8, pairs 64→256, 32→128, 16→64,
          full-width networks, Adam 1e-4 (β 0, 0.99). Sized for a GPU/TPU.
  quick   a 2-core CPU demo (<= 10 min): G and D at width 1/4 (the
          pretrained VGG at full width), 64-pixel
          inputs (pairs 16→64 and 8→32), batch 4; random 64-pixel crops of
          the builtin photos that contain faces (astronaut, grace_hopper).
  celeba  train on the first 16 CelebA-HQ faces of ../shared/data/celeba_hq
          resized to 256 (the paper's pairs 64→256 etc.), then evaluate x4
          256 → 1024 on those faces and on the unseen rest; with quick the
          inputs are random 128 crops of the 256 faces (pairs 32→128, 16→64).
  test    tiny shapes for the test suite (random width-1/16 VGG).
"""

import ml_collections

from configs.base import quick_run, run_config, source, tiny_run, validation_fields, variants, vgg_fields

FACE_IMAGES = "astronaut,grace_hopper"


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    args = variants(arg, ("quick", "test", "celeba"), "configs/face_sr.py")

    c = run_config("face_sr", total_steps=100_000, batch_size=8)
    vgg_fields(c)

    c.model = ml_collections.ConfigDict()
    c.model.width = 1.0  # G channels 64·2^i
    c.model.n_down = 2
    c.model.n_bottleneck = 2
    c.model.global_skip = True  # output = bicubic(LR) + G's residual (instance norm loses mean colour)
    c.model.d_width = 1.0
    c.model.d_down = 3
    c.model.vgg_width = 1.0  # 1.0 for pretrained weights (< 1 needs backbone=random)

    c.loss = ml_collections.ConfigDict()
    c.loss.adv = 1.0  # weight of ½(D(G(LR)) − 1)² (the paper: 1)
    c.loss.vgg = 1.0  # weight of Σ_i ‖f_i(G) − f_i(GT)‖₁ (the paper: 1)
    c.loss.vgg_layers = "conv1_2,conv2_2,conv3_4,conv4_4"  # VGG-19 names; on VGG-16 conv3_3, conv4_3
    c.loss.feature_scale = 0.0  # features x this; 0 = per backbone: 1/255 (Caffe VGG-19), 1.0 (torch VGG-16)

    c.optim = ml_collections.ConfigDict(dict(lr=1e-4, b1=0.0, b2=0.99, decay=0.5, decay_steps=50_000))

    c.data = ml_collections.ConfigDict()
    c.data.face_size = 0  # resize each training image to this first (0 = keep; CelebA-HQ: 256)
    c.data.input_size = 256  # S: random S x S crops of it are the inputs (S = face_size: whole faces)
    c.data.limit = 0  # use only the first N images of the source (0 = all)
    c.data.scales = 3  # pairs S/4→S, S/8→S/2, S/16→S/4
    c.data.flip = True
    c.data.noise_sigma = (0.01, 0.05)
    c.data.blur_sigma = (0.4, 1.2)
    c.data.jpeg_quality = (40, 90)
    c.data.threads = 0  # grain read threads; 0: one per CPU core (common.data.pipeline.read_threads)
    c.data.train = source(FACE_IMAGES)

    c.eval = ml_collections.ConfigDict()
    validation_fields(c)
    c.eval.data = ""  # HR faces; '' = ../shared/data/celeba_hq when present, else builtin astronaut+grace_hopper
    c.eval.hr_size = 1024  # HR faces are resized to this first (0 = keep)
    c.eval.train_count = 0  # the first N evaluation faces were training inputs (Table 1); the rest: Table 2
    c.eval.max_images = 0  # 0 = all
    c.eval.num_samples = 3
    c.eval.inception_weights = ""  # converted Keras InceptionV3 .npz (python -m common.quality.fid convert): adds FID

    if "quick" in args:
        quick_run(c, 1500)
        c.batch_size = 4
        c.model.width = 0.25
        c.model.d_width = 0.25
        c.optim.lr = 5e-4
        c.data.input_size = 64
        c.data.scales = 2
        c.eval.max_images = 12
    if "celeba" in args:
        c.data.train.update(kind="folder", path="../shared/data/celeba_hq")
        c.data.face_size = 256
        c.data.limit = 16
        c.eval.data = "../shared/data/celeba_hq"
        c.eval.train_count = 16
        c.eval.max_images = 0
        if "quick" in args:
            c.data.input_size = 128
            c.total_steps = 700
            c.checkpoint_every = 350
    if "test" in args:
        tiny_run(c)
        c.model.width = 1 / 16
        c.model.d_width = 1 / 16
        c.backbone = "random"
        c.model.vgg_width = 1 / 16
        c.model.n_down = 1  # keeps the bottleneck at >= 2x2 (instance norm over one pixel is ill-conditioned)
        c.model.n_bottleneck = 1
        c.model.d_down = 2
        c.optim.lr = 1e-3
        c.data.input_size = 32
        c.data.scales = 2
        c.data.threads = 1
        c.eval.data = "builtin:astronaut"
        c.eval.hr_size = 64
        c.eval.num_samples = 1
    return c
