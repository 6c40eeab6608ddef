"""Ioffe & Szegedy 2015, "Batch Normalization: Accelerating Deep Network Training by Reducing
Internal Covariate Shift": Fig. 1 (`fig1_mnist`)."""
