"""PyTorch side of lce: model loading, layer hooks, probe sets and the dissection engine.

Modules, in the order a run uses them: ``models`` (specs, layer taps, token grids; ``registry``
and ``formats``/``formats_tf`` for the paper's checkpoints), ``broden`` (the probe reader),
``feed`` (loader, forward pass), ``passes`` (the three passes), ``quantile`` (exact thresholds in
bounded memory), ``cache`` (the sparse activation cache), ``upsample`` (exact restricted
upsampling), ``tally`` and ``top_maps`` (what pass 3 counts and keeps), ``running`` (the
running-state interface), ``distributed`` (torchrun), ``checkpoint``, ``lake_write``, and
``engine`` (settings and the run). The ``probe_*`` modules build probe sets.

Who imports torch: this package, and in ``lce/`` only the demo's model zoo and its task
benchmarks (``lce.zoo``, ``lce.taskbench``). ``warehouse/``, ``base/`` and the app do not, so a
warehouse can be built and explored without it being loaded.
"""
