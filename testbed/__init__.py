"""What the tests and the benchmarks both run on: rooms of real Peers and waits on their
events, a faulty room, peer processes on NATS, a coturn TURN server and a JupyterLab with
headless Chromium.

A package of the repository, not of the wheel (pyproject.toml ships only peerix_nb): it is
importable wherever the repository root is, as under `pip install -e .`, `python -m pytest`
and `python -m bench`.
"""
