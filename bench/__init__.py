"""The benchmarks: every figure in bench/RESULTS.md (an index of the pages in bench/pages/) comes from one of these
modules, run from the repository root as ``python -m bench.NAME ...`` (``--help`` on each).

- ``throughput``: training and inference steps against GluonCV and PyTorch, same run (``--precision``: bfloat16
  training and INT8 inference against float32); ``train_speed``: ``train_resnet.py`` end to end;
  ``data_throughput``: the input pipeline; ``memonger``: memory and speed with the memory planner;
- the grids of short training runs, each a definition of its cells over :mod:`bench.grid`: ``recipe_ablation``,
  ``jpeg_quality``, ``precision_accuracy``, ``finetune``.
"""
