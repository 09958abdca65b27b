"""Sweeps: grids of ``lsrl fit`` configurations × environments × seeds, run as Ray Tune trials.

* :mod:`~lightning_sparse_rl.sweep.spec`: sweep files and their expansion into trials (no Ray);
* :mod:`~lightning_sparse_rl.sweep.trial`: one trial, an ``lsrl fit`` child process that continues from its
  checkpoint (the Tune trainable);
* :mod:`~lightning_sparse_rl.sweep.engine`: Ray start-up, the Tune experiment and its console table.

Nothing here imports Lightning: a trial is an ``lsrl fit`` process, and ``lsrl sweep`` (in ``cli/``) checks the
trials' settings with ``lsrl fit``'s parser before any trial starts.
"""
