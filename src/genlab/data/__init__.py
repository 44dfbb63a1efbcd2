"""LightningDataModules. Every batch is a tuple `(x, labels)`."""
