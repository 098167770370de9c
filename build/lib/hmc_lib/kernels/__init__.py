"""Transition kernels (one module per sampler), all built on `metropolis`."""
