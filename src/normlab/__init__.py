"""normlab: reproductions of Ioffe & Szegedy 2015 and Santurkar et al. 2018 on batch normalization."""

__version__ = "0.1.0"

from normlab import resolvers  # noqa: E402,F401  (the configs' resolvers)
