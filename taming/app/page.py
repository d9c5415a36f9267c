"""The Streamlit page of `taming app`: widgets and layout only; the work is done by taming.generation
(loading, conditioning, drawing, pictures) and taming.app (uploads, layouts), tested without Streamlit.

    taming app [--logdir RUN] [--config YAML ...]     (or: streamlit run taming/app/page.py -- ARGS)

Layout: the Sample button above three columns: conditioning | sample (progress, live preview,
downloads) | real image; all three at one whole enlargement (nearest), wide outputs stacked instead.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Mapping, NoReturn, Sequence

import streamlit as st
import torch

from taming.app import layouts
from taming.generation import conditioning as cond
from taming.generation.drawing import (SamplingSpec, decode_codes, fast_stride, image_codes, masked_image,
                                       sample_grid, size_warning)
from taming.app.launch import USER_ERRORS, build_parser, one_line
from taming.config import fix_allow_list
from taming.generation.runs import LoadedRun, RunSource, check_allowed, find_runs, load_run, resolve_run
from taming.generation.pictures import (condition_picture, describe_run, download_name, enlarged, png_bytes,
                                 shown_factor, to_pixels)
from taming.app.uploads import image_upload, segmentation_upload
from taming.precision import PRECISIONS

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ROOT = Path.cwd()  # the folder the app was started in: typed paths must lie under it
MAX_GROWTH = 8  # the largest output, in training windows per side
UPLOAD = "upload a file"
SAMPLE, COMPLETE = "sample", "complete an image"
RUNNING = "sampling"  # session key: the progress of the sampling run in flight


def stop_with(message: str | BaseException) -> NoReturn:
    st.error(message if isinstance(message, str) else one_line(message))
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
        fix_allow_list(args.allow_import)  # what the command line allows, for every session of this server
    except USER_ERRORS as exc:
        stop_with(exc)
    runs = find_runs()
    default = args.logdir or ("" if args.config or not runs else str(runs[0]))
    st.sidebar.header("Model")
    target = st.sidebar.text_input("Run folder or checkpoint", value=default, key="target").strip()
    configs = st.sidebar.text_input("Extra config files (merged over the run's; space-separated)",
                                    value=" ".join(args.config), key="configs").split()
    try:
        given = [p for p in (args.logdir, *args.config) if p]
        check_allowed([target] if target else [], ROOT, given, "--logdir")
        check_allowed(configs, ROOT, given, "--config")
        source = resolve_run(target or None, configs)
        run = cached_run(source, source.modified())
    except USER_ERRORS as exc:
        stop_with(exc)
    except Exception as exc:  # anything else a broken file causes: still one line, never a traceback
        stop_with(f"cannot load {target or ' + '.join(configs)}: {type(exc).__name__}: {one_line(exc)}")
    st.sidebar.caption(describe_run(run))
    for warning in run.warnings:
        st.warning(warning)
    return run


def choose_settings(run: LoadedRun, mode: str) -> SamplingSpec:
    st.sidebar.header("Sampling")
    vocab = run.model.vocab_size
    top_k = st.sidebar.number_input("top-k (0: every code)", 0, vocab, min(100, vocab), key="top_k")
    top_p = st.sidebar.slider("top-p (1: off)", 0.05, 1.0, 1.0, 0.05, key="top_p",
                              help="nucleus sampling: only the likeliest codes that together hold this probability")
    temperature = st.sidebar.slider("temperature", 0.1, 2.0, 1.0, 0.05, key="temperature")
    seed = st.sidebar.number_input("seed", 0, 2**31 - 1, 0, key="seed")
    wh, ww = run.window
    left, right = st.sidebar.columns(2)
    h = int(left.number_input("height (codes)", wh, MAX_GROWTH * wh, wh, key=f"height_{wh}"))
    w = int(right.number_input("width (codes)", ww, MAX_GROWTH * ww, ww, key=f"width_{ww}"))
    larger = (h, w) != run.window
    fast = st.sidebar.checkbox(f"fast mode: the window moves {fast_stride(run.window)} codes at a time",
                               key="fast", disabled=not larger,
                               help="for outputs larger than the training window (sliding-window sampling)")
    guidance = 0.0
    if getattr(run.model, "cfg_null_token", None) is not None and not larger and mode != COMPLETE:
        guidance = st.sidebar.number_input("guidance scale (0: off)", 0.0, 20.0, 0.0, 0.5, key="cfg_scale",
                                           help="classifier-free guidance: 1 is the conditional model, above 1 "
                                                "follows the conditioning more closely")
    precision = st.sidebar.selectbox("decoding precision", PRECISIONS, key="precision",
                                     help="fp32 is exact; bf16 and int8 decode faster on CPUs, not bit-exact")
    keep = 0
    if mode == COMPLETE:
        keep = int(st.sidebar.number_input("rows of the image to keep", 1, h - 1, max(1, h // 2), key="keep_rows"))
    return SamplingSpec((h, w), int(top_k) or None, float(temperature), int(seed), fast and larger, precision, keep,
                        top_p=float(top_p) if top_p < 1 else None, cfg_scale=float(guidance) or None)


def upload_example(run: LoadedRun, size_px: tuple[int, int], mode: str) -> cond.Example | None:
    kind = cond.condition_kind(run.model)
    what = "an image to complete" if mode == COMPLETE else f"a {kind} map"
    file = st.file_uploader(f"Upload {what} (PNG or JPEG)", type=["png", "jpg", "jpeg"], key="upload")
    if file is None:
        return None
    data = file.getvalue()
    if mode == COMPLETE:
        image = image_upload(data, file.name, size_px)
        if kind == "image":  # conditioned on the image itself: the upload is both
            return cond.Example(image, image, f"upload {file.name} (also its conditioning)")
        if kind != cond.SEGMENTATION or not cond.landscapes_fit(run.model):  # nothing to offer: said at sampling
            return cond.Example(image, None, f"upload {file.name}")
        # The upload is the image to complete; the map the GPT reads is a landscape's, chosen and named here.
        scene = int(st.number_input("segmentation map: procedural landscape", 0, cond.LANDSCAPE_SCENES - 1, 0,
                                    key="complete_map"))
        example = cond.landscape_example(run, scene, size_px)
        return cond.Example(image, example.condition, f"upload {file.name} under the map of landscape {scene}")
    if kind == cond.SEGMENTATION:
        n_labels = run.model.cond_stage_model.encoder.in_channels
        return cond.Example(None, segmentation_upload(data, file.name, n_labels, size_px), f"upload {file.name}")
    channels = getattr(getattr(run.model.cond_stage_model, "encoder", None), "in_channels", 3)
    return cond.Example(None, image_upload(data, file.name, size_px, channels), f"upload {file.name}")


def choose_example(run: LoadedRun, size_px: tuple[int, int], mode: str) -> cond.Example | None:
    sources = cond.example_sources(run)
    if cond.condition_kind(run.model) not in ("unconditional", cond.CLASS, *layouts.LAYOUT_KEYS) or mode == COMPLETE:
        sources = [*sources, UPLOAD]
    if not sources:
        return cond.unconditional_example()
    source = st.radio("Conditioning from", sources, horizontal=True, key="source")
    try:
        if source == UPLOAD:
            return upload_example(run, size_px, mode)
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
    except USER_ERRORS as exc:
        stop_with(exc)


def columns(size_px: tuple[int, int]) -> list[Any]:
    """Three side-by-side slots (conditioning, sample, real image); wide outputs get one slot per row."""
    h, w = size_px
    return [st.container() for _ in range(3)] if w > 1.5 * h else list(st.columns(3))


def show_picture(slot: Any, pixels: Any, factor: int, caption: str) -> Any:
    shown = enlarged(pixels, factor=factor)
    slot.image(shown, caption=caption, width=shown.shape[1])  # its own width: the browser does not rescale
    return shown


def draw(run: LoadedRun, example: cond.Example, settings: SamplingSpec, slot: Any, factor: int, key: str) -> None:
    """Sample with a progress bar and a live preview; the result stays in the session under `key`."""
    stop = slot.empty()  # any click reruns the page, which stops this run (and says so)
    stop.button("Stop sampling", key="stop_button")
    bar, preview_slot = slot.progress(0.0, text="sampling codes"), slot.empty()
    # Stored now and updated in place: a stopped run may no longer write the session state (Streamlit
    # raises at that write), and the rerun that shows "stopped at N%" starts before this run ends.
    state = {"done": 0.0, "preview": None, "key": key}
    st.session_state[RUNNING] = state
    start = time.perf_counter()

    def progress(done: float) -> None:
        state["done"] = done
        bar.progress(done, text=f"sampling codes: {done:.0%}")

    def preview(codes: torch.Tensor, sampled: torch.Tensor) -> None:
        state["preview"] = to_pixels(masked_image(run, codes, sampled))
        show_picture(preview_slot, state["preview"], factor, f"live preview: {sampled.float().mean():.0%} sampled")

    try:
        given = None
        if settings.keep_rows:
            if example.image is None:
                raise ValueError("this example has no image to complete")
            given = image_codes(run, cond.fit_condition(example.image, tuple(x * run.factor for x in settings.size), False))
        codes = sample_grid(run, cond.encode_condition(run, example), settings, progress, preview, given)
        pixels = to_pixels(decode_codes(run, codes))
    except USER_ERRORS as exc:
        st.session_state.pop(RUNNING, None)
        bar.empty()
        stop_with(exc)
    st.session_state.pop(RUNNING, None)  # finished: nothing was stopped
    for placeholder in (stop, bar, preview_slot):
        placeholder.empty()
    h, w = settings.size
    st.session_state["sample"] = {
        "key": key, "pixels": pixels, "file_name": download_name(run.source.name, example.caption, settings),
        "caption": (f"{example.caption}; {h}x{w} codes ({pixels.shape[0]}x{pixels.shape[1]} px), "
                    f"top-k {settings.top_k or 'all'}{f', top-p {settings.top_p:g}' if settings.top_p else ''}, "
                    f"temperature {settings.temperature:g}{f', guidance {settings.cfg_scale:g}' if settings.cfg_scale else ''}, "
                    f"seed {settings.seed}, "
                    f"{settings.precision}{', fast' if settings.fast else ''}"
                    f"{f', kept {settings.keep_rows} rows' if settings.keep_rows else ''}: "
                    f"{time.perf_counter() - start:.1f} s")}


def show_interrupted(slot: Any, factor: int) -> None:
    """What a run stopped by Stop (or by a changed setting) had sampled: it left its progress behind."""
    stopped = st.session_state.pop(RUNNING, None)
    if stopped is None:
        return
    slot.warning(f"Sampling stopped at {stopped['done']:.0%} (Stop pressed or a setting changed while it ran): "
                 "press Sample to draw it again")
    if stopped["preview"] is not None:
        show_picture(slot, stopped["preview"], factor, "what was sampled before it stopped")


def show_sample(slot: Any, factor: int, key: str) -> None:
    sample = st.session_state.get("sample")
    if sample is None or sample["key"] != key:  # another model, example or setting: not this sample
        return
    pixels = sample["pixels"]
    shown = show_picture(slot, pixels, factor, f"{sample['caption']} (shown x{factor}, nearest)")
    slot.download_button(f"Download PNG ({pixels.shape[1]}x{pixels.shape[0]} px)", png_bytes(pixels),
                         file_name=sample["file_name"], mime="image/png", key="download")
    slot.download_button(f"Download as shown ({shown.shape[1]}x{shown.shape[0]} px)", png_bytes(shown),
                         file_name=sample["file_name"].replace(".png", f"_x{factor}.png"), mime="image/png",
                         key="download_shown")


def main() -> None:
    st.set_page_config(page_title="taming: sample", layout="wide")
    st.title("Sample from a trained transformer")
    run = choose_run()
    mode = st.sidebar.radio("Mode", [SAMPLE, COMPLETE], key="mode",
                            help="complete an image: keep the top rows of a real image's codes, sample the rest")
    settings = choose_settings(run, mode)
    size_px = (settings.size[0] * run.factor, settings.size[1] * run.factor)
    warning = size_warning(run, settings.size)
    if warning:
        st.warning(warning)
    example = choose_example(run, size_px, mode)
    if example is None:
        st.info("Upload a file to sample from it.")
        return
    if mode == COMPLETE and example.image is None:
        stop_with("this example has no image to complete: pick validation data, landscapes or an upload")
    factor = shown_factor(size_px)
    key = repr((run.source.name, run.source.modified(), example.caption, settings, mode))
    pressed = st.button("Sample", type="primary", key="sample_button")
    left, middle, right = columns(size_px)
    picture = example.picture if isinstance(example, layouts.LayoutExample) else condition_picture(run, example)
    if picture is None:
        left.markdown(f"**Conditioning:** {example.caption}")
    else:
        show_picture(left, picture, factor, f"conditioning: {example.caption}")
    if example.image is not None:
        real = to_pixels(cond.fit_condition(example.image, size_px, False))
        show_picture(right, real, factor, "real image" + (" (its top rows are kept)" if mode == COMPLETE else ""))
    show_interrupted(middle, factor)
    if pressed:
        draw(run, example, settings, middle, factor, key)
    show_sample(middle, factor, key)


main()
