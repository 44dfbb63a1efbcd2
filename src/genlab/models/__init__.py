"""LightningModules: the training logic, one file per family."""
