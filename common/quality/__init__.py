"""How results are scored.

`metrics` (PSNR, SSIM, and the other per-image measures, each against a numpy transcription in the tests),
`lpips`, `fid` (Fréchet distances) and `evaluation` (evaluation image sets, tiling, sample grids).
"""
