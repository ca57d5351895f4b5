"""HBNN layer types (registered on import): HBNNInnerProduct and HBNNConvolution.

The math of each is stated at the top of its module; the binarisation they share, alpha (.)
sign(W) and its straight-through + alpha gradient, in dualnet.hbnn.binarization.
"""
from .convolution import HBNNConvolution  # noqa: F401
from .inner_product import HBNNInnerProduct  # noqa: F401
