"""Reports of sweeps and runs (``lsrl report``): statistics by rliable, tables in Markdown, figures in PNG.

* :mod:`~lightning_sparse_rl.report.runs`: the evaluations of a sweep folder's trials or of run folders;
* :mod:`~lightning_sparse_rl.report.statistics`: rliable's aggregates, intervals, probabilities and profiles;
* :mod:`~lightning_sparse_rl.report.normalization`: random and reference scores for normalised returns;
* :mod:`~lightning_sparse_rl.report.figures`, :mod:`~lightning_sparse_rl.report.document` and
  :mod:`~lightning_sparse_rl.report.build`: the report's figures, its sections and its files.
"""
