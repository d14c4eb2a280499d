"""Code shared by the methods, by concern.

* `common.train`: the training loop (`trainer`) and its infrastructure: checkpoints, logs, sharding over
  devices and processes, optimizers, mixed precision, host memory and XLA flags.
* `common.nn`: network parts: the CPU-tuned convolution, layers, GAN losses.
* `common.data`: image files, the grain input pipeline, degradations and resizing.
* `common.quality`: quality metrics (PSNR, SSIM, LPIPS, FID) and evaluation over image sets.
* `common.pretrained`: pretrained networks (VGG) and the restricted loading of weights files.
* `common.errors`: the user-facing errors, reported as one line.

A module belongs here once two methods use it (or it is a general metric any method may report); code that
only one method uses lives in that method's package.
"""
