"""Using a trained run: loading it, conditioning, sampling with progress, pictures; and the sampling
jobs behind the `taming sample*`, `reconstruct`, `encode` and `decode` commands. The app, the CLI and
taming.eval build on this package; it imports neither Lightning training code, Streamlit nor taming.eval.
Its modules: docs/ARCHITECTURE.md, "generation/".
"""
