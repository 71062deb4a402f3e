"""Training: losses, trainer and data loading for the segmentation networks.

Modules (import them directly; this package imports nothing so that light users stay light):

* ``config``: :class:`TrainConfig` (JSON settings of a run);
* ``splits``: seeded k-fold case splits;
* ``hdf5_cases``, ``data``: cases read from an HDF5 dataset and preprocessed once into memory;
  :class:`PatchSampler` draws seeded (per-iteration) batches;
* ``losses``: BCE, Dice, BCE + Dice with per-voxel weights, loss over recurrent steps;
* ``trainer``: the iteration loop with validation (Dice, HD95), checkpoints and resume;
* ``checkpoint``: safetensors + JSON checkpoints (no pickles);
* ``callbacks``: progress and CSV/JSON logs;
* ``distributed``: ``torchrun`` / DistributedDataParallel helpers;
* ``run``: a whole run on a dataset, ending with the exported model (``autoctv train``).
"""
