"""Network parts that more than one method builds with.

`conv` (the convolution with CPU-tuned gradients that every network uses, and its run-wide configuration),
`layers` (residual blocks, pixel shuffle, instance norm …) and `gan` (discriminator blocks and the GAN losses).
"""
