"""Training: losses, trainer and data loading for the segmentation networks."""
