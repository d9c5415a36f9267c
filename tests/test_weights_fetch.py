"""Weight files fetched on request only: checksum, truncated and resumed transfers against a local
HTTP server (127.0.0.1), the listing, and errors that name the fetch command."""
import hashlib
import http.server
import threading

import pytest

from taming.cli.main import main as taming
from taming.weights import MIDAS, REGISTRY, FetchError, WeightFile, WeightsNotFound, fetch, find
from taming.weights import files as weight_files

PAYLOAD = bytes(range(256)) * 1000  # 256000 bytes


class Server:
    """Serves PAYLOAD at /w.bin with Range support; `mode`: ok, truncate (half, then close), corrupt."""

    def __init__(self):
        self.mode = "ok"
        self.requests = []  # (path, Range header)
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.requests.append((self.path, self.headers.get("Range")))
                body = PAYLOAD if owner.mode != "corrupt" else PAYLOAD[::-1]
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                rest = body[start:]
                self.send_header("Content-Length", str(len(rest)))
                self.end_headers()
                self.wfile.write(rest[: len(rest) // 2] if owner.mode == "truncate" else rest)
                if owner.mode == "truncate":
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/w.bin"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def spec_for(server, **kw) -> WeightFile:
    return WeightFile(name="testfile", what="a test file", files=("test-file.bin",), urls=(server.url,),
                      env="TAMING_TEST_FILE", used_by="tests", **{"md5": hashlib.md5(PAYLOAD).hexdigest(), **kw})


def test_wrong_checksum_is_refused_and_nothing_is_kept(server, tmp_path):
    server.mode = "corrupt"
    with pytest.raises(FetchError, match="wrong file, deleted: its MD5 is"):
        fetch(spec_for(server), folder=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    server.mode = "ok"  # a SHA-256 prefix as torchvision names carry: the right bytes pass, others do not
    assert fetch(spec_for(server, md5=None, sha256_prefix=sha[:8]), folder=tmp_path, progress=False).is_file()
    with pytest.raises(FetchError, match=f"published one starts {'0' * 8}"):
        fetch(spec_for(server, md5=None, sha256_prefix="0" * 8), folder=tmp_path / "b", progress=False)


def test_truncated_transfer_is_kept_and_resumed_with_a_range_request(server, tmp_path):
    spec = spec_for(server)
    server.mode = "truncate"
    with pytest.raises(FetchError, match=r"transfer stopped after 128000 of 256000 bytes.*again to resume"):
        fetch(spec, folder=tmp_path, progress=False)
    part = tmp_path / ".test-file.bin.part"
    assert part.stat().st_size == 128000 and not (tmp_path / "test-file.bin").exists()
    server.mode = "ok"
    path = fetch(spec, folder=tmp_path, progress=False)
    assert path == tmp_path / "test-file.bin" and path.read_bytes() == PAYLOAD and not part.exists()
    assert server.requests[-1] == ("/w.bin", "bytes=128000-")  # only the rest was asked for
    assert fetch(spec, folder=tmp_path, progress=False) == path and len(server.requests) == 2  # there: no request


def test_a_file_is_found_or_fetched_only_on_request(server, tmp_path, monkeypatch):
    spec = spec_for(server)
    monkeypatch.setenv("TAMING_WEIGHTS_DIR", str(tmp_path / "cache"))
    with pytest.raises(WeightsNotFound) as err:
        find(spec)
    msg = str(err.value)
    assert "`taming weights fetch testfile`" in msg and str(tmp_path / "cache" / "test-file.bin") in msg
    assert server.requests == []  # nothing downloaded without asking
    monkeypatch.setenv("TAMING_FETCH_WEIGHTS", "1")
    assert find(spec).read_bytes() == PAYLOAD and len(server.requests) == 1
    monkeypatch.setenv("TAMING_TEST_FILE", str(tmp_path / "typo.bin"))  # an explicit variable: no fallback
    assert find(spec) == tmp_path / "cache" / "test-file.bin"


def test_missing_network_weights_name_their_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("TAMING_MIDAS", raising=False)
    with pytest.raises(WeightsNotFound, match="taming weights fetch midas") as err:
        find(MIDAS)
    assert "model-f6b98070.pt" in str(err.value) and "--weights" in str(err.value)


def test_cli_lists_every_file_and_fetches_by_name(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TAMING_WEIGHTS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setitem(REGISTRY, "testfile", spec_for(server))
    assert taming(["weights"]) == 0
    out = capsys.readouterr().out
    for spec in weight_files.REGISTRY.values():
        assert f"{spec.name}: " in out and spec.files[0] in out
    for name in ("vgg.pth", "vgg16-397923af.pth", "pt_inception-2015-12-05-6726825d.pth",
                 "deeplabv2_resnet101_msc-cocostuff164k-100000.pth", "d507d7349b931f0638a25a48a722f98a"):
        assert name in out
    assert "missing: `taming weights fetch testfile`" in out
    assert taming(["weights", "fetch", "testfile", "--quiet"]) == 0
    assert (tmp_path / "cache" / "test-file.bin").read_bytes() == PAYLOAD
    assert taming(["weights", "--check"]) == 0
    assert "present, checksum OK" in capsys.readouterr().out
    assert taming(["weights", "fetch", "nosuch"]) == 2
    assert "unknown weight file 'nosuch'" in capsys.readouterr().err
