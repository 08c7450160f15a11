"""Scripts that regenerate repository assets (run as `python -m tools.NAME`)."""
