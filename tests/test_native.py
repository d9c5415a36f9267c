"""taming.native: C sources compiled for this CPU on first use, cached per machine, loaded with ctypes;
every failure is one NativeUnavailable naming its cause."""
import ctypes
import os

import pytest

from taming import hardware, native

SOURCE = "int twice(int x) { return 2 * x; }\n"


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty kernel cache and no library loaded yet in this process."""
    monkeypatch.setenv("TAMING_KERNEL_CACHE", str(tmp_path / "kernels"))
    monkeypatch.setattr(native, "_loaded", {})
    src = tmp_path / "twice.c"
    src.write_text(SOURCE)
    return src


def test_builds_loads_and_reuses_the_cached_library(fresh, monkeypatch, tmp_path):
    lib = native.load(fresh)
    assert lib.twice(21) == 42
    built = list((tmp_path / "kernels").glob("twice-*.so"))
    assert len(built) == 1
    assert native.load(fresh) is lib  # once per process

    monkeypatch.setattr(native, "_loaded", {})  # a new process: the cached file, no compiler run

    def no_compiler(*args):
        raise AssertionError("compiled again")
    monkeypatch.setattr(native, "_build", no_compiler)
    assert native.load(fresh).twice(5) == 10


def test_another_source_or_cpu_is_another_library(fresh, monkeypatch, tmp_path):
    native.load(fresh)
    monkeypatch.setattr(native, "_loaded", {})
    fresh.write_text(SOURCE.replace("2 * x", "3 * x"))
    assert native.load(fresh).twice(5) == 15
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setattr(native, "cpu_flags", lambda: {"sse2"})  # another machine sharing the cache
    assert native.load(fresh).twice(5) == 15
    assert len(list((tmp_path / "kernels").glob("twice-*.so"))) == 3


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv("TAMING_KERNEL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert native.cache_dir() == tmp_path / "taming" / "kernels"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert native.cache_dir() == native.Path.home() / ".cache" / "taming" / "kernels"


def test_a_missing_compiler_is_named(fresh, monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(native.NativeUnavailable, match="the C compiler '/nonexistent/cc' does not run"):
        native.load(fresh)
    monkeypatch.delenv("CC")
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    with pytest.raises(native.NativeUnavailable, match="no C compiler found .install gcc, or set CC."):
        native.load(fresh)


def test_a_failing_build_says_what_the_compiler_said(fresh):
    fresh.write_text("int twice(int x) { return 2 * x }\n")  # a syntax error
    with pytest.raises(native.NativeUnavailable, match=r"compiling twice.c for the \w+ class with \S+ failed \(.*-fopenmp: .*error"):
        native.load(fresh)
    assert not list(native.cache_dir().glob("*.so"))  # nothing half-written is left to load


def test_refused_flags_are_dropped(fresh, monkeypatch):
    real = native._build

    def no_openmp(source, cc, flags, out):  # a compiler without OpenMP (Apple clang)
        return "unsupported option '-fopenmp'" if "-fopenmp" in flags else real(source, cc, flags, out)
    monkeypatch.setattr(native, "_build", no_openmp)
    assert native.load(fresh).twice(4) == 8


def test_loaded_library_is_a_ctypes_library(fresh):
    assert isinstance(native.load(fresh), ctypes.CDLL)
    assert os.access(next(native.cache_dir().glob("twice-*.so")), os.R_OK)


def test_an_unwritable_cache_is_named(fresh, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("TAMING_KERNEL_CACHE", str(blocker / "kernels"))  # under a file: cannot be made
    with pytest.raises(native.NativeUnavailable, match="cannot write the kernel cache .*set TAMING_KERNEL_CACHE"):
        native.load(fresh)


def test_a_missing_source_is_named(fresh):
    with pytest.raises(native.NativeUnavailable, match="the kernel source .*gone.c is missing"):
        native.load(fresh.with_name("gone.c"))


TARGET = """int vector_bits(void) {
#if defined(__AVX512F__)
    return 512;
#elif defined(__AVX2__)
    return 256;
#else
    return 128;
#endif
}
"""
BITS = {"amx_bf16": 512, "avx512_bf16": 512, "avx512": 512, "avx2": 256, "baseline": 128}


def test_every_class_the_machine_runs_builds_for_that_class(fresh, tmp_path):
    """One library per class, named by it, compiled for that class's vector width (the machine's own
    class with -march=native), so a test can run the kernels of every class below the machine's."""
    fresh.write_text(TARGET)
    machine = hardware.detect("cpu").machine_isa or hardware.detect("cpu").isa
    classes = hardware.runnable_isas(machine)
    for isa in classes:
        bits = native.load(fresh, isa).vector_bits()
        if isa != machine or native.platform.machine().lower() in ("x86_64", "amd64"):
            assert bits == BITS[isa], isa
    assert len({p.name for p in (tmp_path / "kernels").glob("twice-*.so")}) == len(classes)
    assert {p.name.split("-")[1] for p in (tmp_path / "kernels").glob("twice-*.so")} == set(classes)


@pytest.mark.parametrize("isa, flags, want", [
    ("avx2", set(), ("-march=x86-64-v3", "-mtune=native", "-fopenmp")),
    ("baseline", set(), ("-march=x86-64", "-mtune=native", "-fopenmp")),
    ("avx512", {"avx512_vnni"}, ("-march=x86-64-v4", "-mavx512vnni", "-mtune=native", "-fopenmp")),
    ("avx512", set(), ("-march=x86-64-v4", "-mtune=native", "-fopenmp")),  # Skylake-SP: no VNNI
    ("avx512_bf16", {"avx512_vnni"}, ("-march=x86-64-v4", "-mavx512vnni", "-mavx512bf16", "-mtune=native", "-fopenmp")),
])
def test_target_flags_of_a_lower_class(monkeypatch, isa, flags, want):
    monkeypatch.setattr(native.platform, "machine", lambda: "x86_64")
    tries = native.target_flags(isa, "amx_bf16", flags)
    assert tries[0] == want and tries[-1] == want[:-2]  # without OpenMP last; never -march=native
    assert not any("-march=native" in t for t in tries)


def test_target_flags_of_the_machines_own_class_or_another_architecture(monkeypatch):
    assert native.target_flags("avx2", "avx2")[0] == ("-march=native", "-fopenmp")
    monkeypatch.setattr(native.platform, "machine", lambda: "aarch64")  # ARM: only the baseline class
    assert native.target_flags("baseline", "baseline")[0] == ("-march=native", "-fopenmp")
    with pytest.raises(native.NativeUnavailable, match="no CPU class 'sse9'"):
        native.target_flags("sse9", "avx2")
