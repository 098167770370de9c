"""Experiment definitions shared by a chapter and its benchmark: run sizes per scale, the
papers' settings and published numbers, and the functions that run one experiment through
the library. One module per paper; the library proper never imports this package."""
