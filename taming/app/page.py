"""The Streamlit page of `taming app`: widgets and layout only; the work is done by the functions of
taming.app (loading, conditioning, drawing, pictures), which run and are tested without Streamlit.

    taming app [--logdir RUN] [--config YAML ...]     (or: streamlit run taming/app/page.py -- ARGS)
"""
from __future__ import annotations

import sys
import time
from typing import Any, Mapping, NoReturn, Sequence

import streamlit as st
import torch

from taming.app import conditioning as cond, layouts
from taming.app.drawing import Settings, decode_codes, fast_stride, sample_codes
from taming.app.loading import LoadedRun, RunSource, find_runs, load_run, resolve_run
from taming.app.pictures import condition_picture, describe_run, enlarged, png_bytes, to_pixels
from taming.cli.app import build_parser
from taming.cli.errors import one_line, user_errors
from taming.transformer.decoding import PRECISIONS

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
MAX_GROWTH = 8  # the largest output, in training windows per side
# What a user can get wrong on this page: a path, a config, data files, a size the model cannot sample.
PAGE_ERRORS = (*user_errors(), ValueError)


def stop_with(exc: BaseException) -> NoReturn:
    st.error(one_line(exc))
    st.stop()


@st.cache_resource(show_spinner="Loading the model ...", max_entries=2)
def cached_run(source: RunSource, modified: float) -> LoadedRun:
    # `modified` only keys the cache: a run trained further (newer files) is loaded again
    return load_run(source, DEVICE)


@st.cache_resource(show_spinner="Reading the validation data ...", max_entries=2)
def cached_examples(_run: LoadedRun, source: RunSource, modified: float) -> Sequence[Mapping[str, Any]]:
    return cond.validation_examples(_run)


def choose_run() -> LoadedRun:
    try:
        args = build_parser().parse_args(sys.argv[1:])
    except PAGE_ERRORS as exc:
        stop_with(exc)
    runs = find_runs()
    default = args.logdir or ("" if args.config or not runs else str(runs[0]))
    st.sidebar.header("Model")
    target = st.sidebar.text_input("Run folder or checkpoint", value=default, key="target")
    configs = st.sidebar.text_input("Config files (optional, space-separated)", value=" ".join(args.config),
                                    key="configs").split()
    try:
        source = resolve_run(target.strip() or None, configs)
        run = cached_run(source, source.modified())
    except PAGE_ERRORS as exc:
        stop_with(exc)
    st.sidebar.caption(describe_run(run))
    return run


def choose_settings(run: LoadedRun) -> Settings:
    st.sidebar.header("Sampling")
    vocab = run.model.vocab_size
    top_k = st.sidebar.number_input("top-k (0: every code)", 0, vocab, min(100, vocab), key="top_k")
    temperature = st.sidebar.slider("temperature", 0.1, 2.0, 1.0, 0.05, key="temperature")
    seed = st.sidebar.number_input("seed", 0, 2**31 - 1, 0, key="seed")
    wh, ww = run.window
    left, right = st.sidebar.columns(2)
    h = left.number_input("height (codes)", wh, MAX_GROWTH * wh, wh, key=f"height_{wh}")
    w = right.number_input("width (codes)", ww, MAX_GROWTH * ww, ww, key=f"width_{ww}")
    larger = (h, w) != run.window
    fast = st.sidebar.checkbox(f"fast mode: the window moves {fast_stride(run.window)} codes at a time",
                               key="fast", disabled=not larger,
                               help="for outputs larger than the training window (sliding-window sampling)")
    precision = st.sidebar.selectbox("decoding precision", PRECISIONS, key="precision",
                                     help="fp32 is exact; bf16 and int8 decode faster on CPUs, not bit-exact")
    return Settings((int(h), int(w)), int(top_k) or None, float(temperature), int(seed), fast and larger, precision)


def choose_example(run: LoadedRun, size_px: tuple[int, int]) -> cond.Example:
    sources = cond.example_sources(run)
    if not sources:
        return cond.unconditional_example()
    source = st.radio("Conditioning from", sources, horizontal=True, key="source")
    try:
        if source == cond.CLASS:
            n_classes = run.model.cond_stage_model.n_classes
            return cond.class_example(run, int(st.number_input("class", 0, n_classes - 1, 0, key="class")))
        if source == cond.LANDSCAPES:
            index = st.number_input("scene", 0, cond.LANDSCAPE_SCENES - 1, 0, key="scene")
            return cond.landscape_example(run, int(index), size_px)
        examples = cached_examples(run, run.source, run.source.modified())
        index = st.number_input(f"example (0..{len(examples) - 1})", 0, len(examples) - 1, 0, key="example")
        if layouts.is_scene_model(run.model):  # object layouts: the example's boxes drawn
            return layouts.layout_example(run, examples, int(index), size_px)
        return cond.dataset_example(run, examples, int(index), size_px)
    except PAGE_ERRORS as exc:
        stop_with(exc)


def show_example(run: LoadedRun, example: cond.Example) -> None:
    left, right = st.columns(2)
    picture = example.picture if isinstance(example, layouts.LayoutExample) else condition_picture(run, example)
    if picture is None:
        left.markdown(f"**Conditioning:** {example.caption}")
    else:
        left.image(enlarged(picture), caption=f"conditioning: {example.caption}")
    if example.image is not None:
        right.image(enlarged(to_pixels(example.image)), caption="real image")


def draw(run: LoadedRun, example: cond.Example, settings: Settings) -> None:
    """Sample with a progress bar; the result stays in the session (a download reruns the page)."""
    bar = st.progress(0.0, text="sampling codes")
    start = time.perf_counter()
    try:
        codes = sample_codes(run, cond.encode_condition(run, example), settings,
                             lambda done: bar.progress(done, text=f"sampling codes: {done:.0%}"))
        pixels = to_pixels(decode_codes(run, codes))
    except PAGE_ERRORS as exc:
        bar.empty()
        stop_with(exc)
    bar.empty()
    h, w = settings.size
    st.session_state["sample"] = {
        "pixels": pixels, "file_name": f"sample_{h}x{w}_seed{settings.seed}.png",
        "caption": (f"{example.caption}; {h}x{w} codes ({pixels.shape[0]}x{pixels.shape[1]} px), "
                    f"top-k {settings.top_k or 'all'}, temperature {settings.temperature:g}, seed {settings.seed}, "
                    f"{settings.precision}{', fast' if settings.fast else ''}: {time.perf_counter() - start:.1f} s")}


def show_sample() -> None:
    sample = st.session_state.get("sample")
    if sample is None:
        return
    st.image(enlarged(sample["pixels"]), caption=sample["caption"])
    st.download_button("Download PNG", png_bytes(sample["pixels"]), file_name=sample["file_name"],
                       mime="image/png", key="download")


def main() -> None:
    st.set_page_config(page_title="taming: sample", layout="wide")
    st.title("Sample from a trained transformer")
    run = choose_run()
    settings = choose_settings(run)
    example = choose_example(run, (settings.size[0] * run.factor, settings.size[1] * run.factor))
    show_example(run, example)
    if st.button("Sample", type="primary", key="sample_button"):
        draw(run, example, settings)
    show_sample()


main()
