"""Downloads of registry weights into the hub checkpoint folder: file:// URLs, progress, atomicity, checks."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vjepa2_core.hub.download as dl
from vjepa2_core.hub import MODELS, CheckpointError, get_spec, load_ac_model, make_random_checkpoint

REPO = str(Path(__file__).resolve().parents[1])
FILE = "ac-tiny-dl.pt"


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("VJEPA2_CHECKPOINT_DIR", raising=False)
    monkeypatch.delenv("VJEPA2_OFFLINE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return Path(torch.hub.get_dir()) / "checkpoints"


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A tiny checkpoint on a file:// 'server' and the tiny AC registry entry pointing at it (with size + hash)."""
    src = make_random_checkpoint(tmp_path / "server" / "weights.pt", "vit_ac_tiny", seed=11)
    data = src.read_bytes()
    spec = dataclasses.replace(
        get_spec("vit_ac_tiny"),
        file_name=FILE,
        download_url=src.as_uri(),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )
    monkeypatch.setitem(MODELS, "vit_ac_tiny", spec)
    return src


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_hub_entry_downloads_once_with_progress(hub_dir, served, capfd):
    encoder, predictor = torch.hub.load(REPO, "vjepa2_ac_vit_tiny", source="local", pretrained=True)
    err = capfd.readouterr().err
    assert FILE in err and "100%" in err, f"no progress bar on stderr: {err!r}"
    assert (hub_dir / FILE).read_bytes() == served.read_bytes()
    assert sorted(p.name for p in hub_dir.iterdir()) == [FILE], "no temp file may stay behind"
    ref_enc, ref_pred = load_ac_model(served)
    assert _same_weights(encoder, ref_enc) and _same_weights(predictor, ref_pred)
    served.unlink()  # the second load uses the folder, not the URL
    encoder2, _ = torch.hub.load(REPO, "vjepa2_ac_vit_tiny", source="local", pretrained=True, progress=False)
    assert _same_weights(encoder2, ref_enc)


def test_checkpoint_dir_env_is_the_target(tmp_path, served, monkeypatch):
    target = tmp_path / "weights"
    monkeypatch.setenv("VJEPA2_CHECKPOINT_DIR", str(target))
    load_ac_model("vit_ac_tiny", download=True, progress=False)
    assert (target / FILE).is_file()


class _Cut:
    """A response that yields ``limit`` bytes and then fails (a dropped connection) or ends early."""

    def __init__(self, inner, limit: int, fail: bool) -> None:
        self.inner, self.limit, self.fail, self.headers = inner, limit, fail, inner.headers

    def read(self, n: int) -> bytes:
        if self.limit <= 0:
            if self.fail:
                raise ConnectionResetError("connection dropped")
            return b""
        chunk = self.inner.read(min(n, self.limit))
        self.limit -= len(chunk)
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.inner.close()


@pytest.mark.parametrize("fail", [True, False], ids=["dropped", "short"])
def test_broken_download_leaves_nothing(hub_dir, served, monkeypatch, fail):
    real = dl._open_url
    monkeypatch.setattr(dl, "_open_url", lambda url: _Cut(real(url), 4096, fail))
    with pytest.raises(CheckpointError, match="incomplete: 4096 of" if not fail else "interrupted after 4096 bytes"):
        load_ac_model("vit_ac_tiny", download=True, progress=False)
    assert not hub_dir.exists() or not any(hub_dir.iterdir())


def test_hash_mismatch_is_refused(hub_dir, served, monkeypatch):
    spec = dataclasses.replace(get_spec("vit_ac_tiny"), sha256="0" * 64)
    monkeypatch.setitem(MODELS, "vit_ac_tiny", spec)
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_ac_model("vit_ac_tiny", download=True, progress=False)
    assert not hub_dir.exists() or not any(hub_dir.iterdir())


_KILLED = """
import os, sys, torch
import vjepa2_core.hub.download as dl
real = dl._open_url
class Dies:
    def __init__(self, inner): self.inner, self.headers, self.calls = inner, inner.headers, 0
    def read(self, n):
        self.calls += 1
        if self.calls > 1:
            os._exit(9)  # killed mid-download: no cleanup code runs
        return self.inner.read(4096)
    def __enter__(self): return self
    def __exit__(self, *exc): pass
dl._open_url = lambda url: Dies(real(url))
torch.hub.load(sys.argv[1], "vjepa2_ac_vit_tiny", source="local", pretrained=True, progress=False)
"""


def test_killed_download_never_looks_complete(hub_dir, served, tmp_path):
    """A process killed mid-download leaves at most a hidden .partial file; the next load downloads again."""
    # the child process gets the same registry entry, set at the top of its script
    script = tmp_path / "killed.py"
    spec = get_spec("vit_ac_tiny")
    script.write_text(
        "import dataclasses\nfrom vjepa2_core.hub import MODELS\n"
        f"MODELS['vit_ac_tiny'] = dataclasses.replace(MODELS['vit_ac_tiny'], file_name={FILE!r}, "
        f"download_url={spec.download_url!r}, sha256={spec.sha256!r}, size={spec.size!r})\n" + _KILLED
    )
    env = {"PATH": "/usr/bin:/bin", "TORCH_HOME": str(tmp_path / "torch_home"), "PYTHONPATH": REPO}
    res = subprocess.run([sys.executable, str(script), REPO], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 9, res.stderr
    left = [p.name for p in hub_dir.iterdir()]
    assert FILE not in left and all(name.startswith(f".{FILE}.") and name.endswith(".partial") for name in left)
    with pytest.raises(CheckpointError, match="not found"):
        load_ac_model("vit_ac_tiny", download=False)
    encoder, _ = load_ac_model("vit_ac_tiny", download=True, progress=False)
    assert _same_weights(encoder, load_ac_model(served)[0])


def test_download_errors_name_the_url(hub_dir, tmp_path, monkeypatch):
    missing = (tmp_path / "nowhere.pt").as_uri()
    spec = dataclasses.replace(get_spec("vit_ac_tiny"), file_name=FILE, download_url=missing)
    monkeypatch.setitem(MODELS, "vit_ac_tiny", spec)
    with pytest.raises(CheckpointError, match=f"cannot download {missing}"):
        load_ac_model("vit_ac_tiny", download=True, progress=False)
    assert not hub_dir.exists() or not any(hub_dir.iterdir())
