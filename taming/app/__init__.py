"""`taming app`: interactive sampling from a trained transformer.

    loading.py       a run folder or checkpoint (+ configs) -> LoadedRun (model, training window)
    conditioning.py  conditioning examples (validation data, procedural landscapes, a class) and their codes
    drawing.py       sampling with a progress callback (generate / sliding window), decoding to pixels
    pictures.py      what the page shows: tensors as RGB pictures, PNG bytes
    page.py          the Streamlit page: widgets only (run with `taming app`)
Everything but page.py works without Streamlit.
"""
