"""Images in and out, and the training input.

`imageio` (reading and writing image files, untrusted ones included), `pipeline` (image sources: builtin
photos, folders, TFDS, ../shared/data; the grain stream of host batches), `degrade` (blur, noise, JPEG, tone
degradations) and `resize` (MATLAB-compatible bicubic).
"""
