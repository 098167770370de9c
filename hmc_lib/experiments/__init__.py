"""Experiment settings shared by a chapter and its benchmark (run sizes per scale, the
papers' settings and published numbers). One module per paper; nothing here runs anything."""
