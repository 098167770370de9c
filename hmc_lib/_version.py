"""The version of hmc_lib (read by pyproject.toml; `hmc_lib.__version__`)."""

__version__ = "0.2.0"
