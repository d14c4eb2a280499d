"""The training loop and what it stands on.

`trainer` is the one loop every method runs (``build_task`` → ``train_and_evaluate``); `checkpoint`
(orbax, with the data stream's position), `logger` (console, metrics.jsonl, TensorBoard), `sharding` (the
device mesh, multi-process start-up), `optim`, `precision` (bf16 compute), and the per-process settings
made before JAX starts: `hostmem` (malloc) and `xla` (XLA:CPU flags).
"""
