"""Training on disagreeing labels: the Quality Awareness Module (QAM) and the Overfitting
Control Module (OCM) of thesis chapter 3 ("Pick-and-Learn", MICCAI 2019), in 2D and 3D.

Modules (import them directly; this package imports nothing so that light users stay light):

* ``qam``: :class:`QualityNetwork`, the VGG-style network Φ that scores each (image, label) pair;
* ``ocm``: Γ(t) = λ·tanh(t) and the softmax over the batch that turns scores into weights;
* ``weighting``: loss-weighting strategies ``"none"``, ``"qam"``, ``"qam_ocm"`` called by the
  trainers with the per-sample losses;
* ``noise``: label-noise simulation (dilate or erode by n pixels / mm on a share of samples);
* ``robust_losses``: the noise-robust Dice loss (Wang et al. 2020), a published baseline;
* ``dataset2d``: a JSRT-like 2D dataset cut from the synthetic pelvis phantoms;
* ``train2d``: a compact 2D training loop (the thesis' table 3.1 is a 2D experiment).
"""
