"""Using a trained run: loading it, conditioning, sampling with progress, pictures; and the sampling
jobs behind the `taming sample*`, `reconstruct`, `encode` and `decode` commands. The app, the CLI and
taming.eval build on this package; it imports neither Lightning training code, Streamlit nor taming.eval.

    runs.py         the one loader: a run folder or checkpoint (+ configs) -> LoadedRun, first stage; its step
    conditioning.py conditioning examples (validation data, procedural landscapes, a class) and their codes
    drawing.py      the one sampling spec and grid sampler (generate / sliding window, guidance, completion,
                    progress and preview callbacks), decoding to pixels
    pictures.py     tensors as RGB pictures, PNG bytes, download names
    files.py        output folders: stable names, atomic PNG writes (resume by skipping), settings JSON, grids
    samples.py      unconditional and class-conditional sampling, image i seeded by (seed, class, i) alone
    rejection.py    rejection sampling: keep the candidates a classifier (passed in) scores most likely
    conditional.py  samples over a dataset split (inputs/, conditioning/, reconstructions/, samples/)
    window.py       one large image from a segmentation or depth map (sliding window), its animation
    first_stage.py  images <-> codes with a first stage (reconstruct, encode to .npy, decode)
The command-line files (taming/cli/sample*.py, reconstruct.py, encode.py, decode.py) only parse,
build and call these.
"""
