"""Layering: inference code imports no training code, and the core modules do not import the
compatibility face (taming/models, taming/modules). Each check runs in a fresh interpreter, since
this test process has long imported everything."""
import json
import subprocess
import sys

import pytest

from helpers import ROOT

INFERENCE_MODULES = ["taming.sampling", "taming.checkpoint", "taming.transformer.net2net",
                     "taming.data.code_shards", "taming.tokenizer.inference", "taming.generation.runs",
                     "taming.generation.conditioning", "taming.generation.drawing", "taming.generation.pictures",
                     "taming.scene",
                     "taming.eval.samples", "taming.eval.reconstruction", "taming.eval.likelihood", "taming.eval.classifier",
                     *(f"taming.generation.{m}" for m in ("files", "samples", "rejection", "conditional",
                                                          "window", "first_stage"))]


def test_inference_imports_no_training_code(tmp_path):
    """Importing sampling, the app's library modules, the code-shard encoder and checkpoint loading, and
    building a model with load_model (a config naming the Lightning shell), import no training code:
    load_model builds the plain core (same weights)."""
    config = tmp_path / "m.yaml"
    config.write_text(json.dumps({"model": {"target": "taming.models.vqgan.VQModel", "params": {
        "embed_dim": 4, "n_embed": 8, "lossconfig": {"target": "taming.modules.losses.vqperceptual.DummyLoss"},
        "ddconfig": {"double_z": False, "z_channels": 4, "resolution": 16, "in_channels": 3, "out_ch": 3,
                     "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}}}}))
    code = ("import json, sys\n" + "".join(f"import {m}\n" for m in INFERENCE_MODULES)
            + f"m, _ = taming.checkpoint.load_model({str(config)!r}, None, [])\n"
            + "library = sorted(sys.modules)\n"
            + "import taming.app.layouts\n"
            + "print(json.dumps([type(m).__module__, m.downsample_factor, library, sorted(sys.modules)]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    module, factor, library, loaded = json.loads(out.stdout.splitlines()[-1])
    assert module == "taming.tokenizer.inference" and factor == 2
    # layers point down: the library (generation, eval, scene, ...) imports neither the app nor the CLI
    assert not [m for m in library if m.startswith(("taming.app", "taming.cli"))]
    assert not [m for m in loaded if m == "taming.training" or m.startswith("taming.training.")]
    assert not [m for m in loaded if m.startswith(("taming.models", "taming.modules", "taming.cli"))]
    assert "lightning" not in loaded and "pytorch_lightning" not in loaded


@pytest.mark.parametrize("core", ["taming.tokenizer", "taming.transformer", "taming.losses", "taming.data",
                                  "taming.sampling", "taming.checkpoint", "taming.config", "taming.eval"])
def test_core_does_not_import_the_compatibility_face(core):
    package = __import__(core, fromlist=["_"])
    files = [package.__file__] if not hasattr(package, "__path__") else \
        [str(p) for d in package.__path__ for p in __import__("pathlib").Path(d).rglob("*.py")]
    for path in files:
        text = open(path).read()
        assert "from taming.models" not in text and "from taming.modules" not in text, path
        assert "import taming.models" not in text and "import taming.modules" not in text, path


def import_graph() -> dict[str, set[str]]:
    """module -> the taming modules it imports anywhere: at the top, inside functions, under
    TYPE_CHECKING (`from pkg import sub` names the submodule; parent packages are not counted)."""
    import ast
    from pathlib import Path

    files = {}
    for path in (ROOT / "taming").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in files]
                names = subs if len(subs) == len(node.names) else [*subs, base]
            else:
                continue
            imported |= {known(n) for n in names if n.split(".")[0] == "taming"} - {None, module}
        graph[module] = imported
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_not_even_inside_functions():
    graph = import_graph()
    assert graph["taming.training.datamodule"] and graph["taming.data.conditional_builder.objects_center_points"]
    assert not cycles(graph)
    assert cycles({**graph, "taming.hardware": graph["taming.hardware"] | {"taming.precision"}}) == [
        ["taming.hardware", "taming.precision"]]  # the check sees one


# arrows that must not exist: a layer importing one above it
UP_ARROWS = {"taming.transformer": ("taming.sampling", "taming.generation", "taming.eval", "taming.cli", "taming.app"),
             "taming.generation": ("taming.eval", "taming.cli", "taming.app"),  # the classifier is passed in
             "taming.eval": ("taming.cli", "taming.app"),
             "taming.flags": ("taming.cli", "taming.training"),
             "taming.precision": ("taming.transformer", "taming.sampling", "taming.tokenizer"),
             "taming.hardware": ("taming.precision",)}


def test_imports_point_down():
    graph = import_graph()
    wrong = [(m, i) for m, imported in graph.items() for i in imported for low, high in UP_ARROWS.items()
             if (m == low or m.startswith(low + ".")) and any(i == h or i.startswith(h + ".") for h in high)]
    assert not wrong
