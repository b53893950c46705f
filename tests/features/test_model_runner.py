"""One model runner, one hash check, and options that reach only the groups declaring them.

Every model group (Inception-v3, both MusiCNN taggers, a model card) runs its
network through :meth:`emodist.features.base.WorkerContext.run_model`, so
``--device`` reaches each of them: on this machine, whose onnxruntime has no
CUDA execution provider, each refuses ``cuda`` with the same one line, on the
driver (the command line) and on a worker computing a chunk.  A model whose
sidecar names another file, and a card that escapes its folder or gives no
hash, are refused on the driver before the store exists.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnxruntime
import pytest

from emodist.errors import ModelError
from emodist.features import FeatureGroup, register
from emodist.features.base import Bound, WorkerContext
from emodist.models import musicnn as m
from tests.features.cards import EMB, FRAMES, MELS, logmel_model, write_card

HAS_CUDA = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
no_cuda = pytest.mark.skipif(HAS_CUDA, reason="this machine has the CUDA execution provider")


@pytest.fixture(scope="module")
def musicnn_dir(tmp_path_factory) -> str:
    """``musicnn_msd.onnx`` and ``musicnn_mtt.onnx``: one random-weight network, two sidecars."""
    out = tmp_path_factory.mktemp("musicnn-models")
    m.build_random_model(out / "musicnn_mtt.onnx", seed=1)
    shutil.copy(out / "musicnn_mtt.onnx", out / "musicnn_msd.onnx")
    side = json.loads((out / "musicnn_mtt.onnx.json").read_text())
    (out / "musicnn_msd.onnx.json").write_text(json.dumps(dict(side, variant="msd")))
    return str(out)


def _cli(argv, capsys):
    """``emodist ARGV``: exit code and the stderr lines."""
    from emodist.cli import main

    code = main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


def _group_args(group: str, tiny_model: str, musicnn_dir: str, card: Path) -> list[str]:
    if group == "card":
        return ["--features", "mymodel", "--model-card", str(card)]
    return ["--features", group, "--model", tiny_model, "--musicnn-dir", musicnn_dir]


MODEL_GROUPS = ("inception_v3", "musicnn_msd", "musicnn_mtt", "card")


# ----------------------------------------------------------------- --device reaches every group


@no_cuda
def test_device_cuda_is_refused_alike_by_every_model_group_on_the_command_line(
        small_dataset, tiny_model, musicnn_dir, tmp_path, capsys, clean_registry):
    card = write_card(tmp_path / "card")
    lines = {}
    for group in MODEL_GROUPS:
        store = tmp_path / f"{group}.zarr"
        code, err = _cli(["extract", str(small_dataset), "--store", str(store), "--device",
                          "cuda", "--quiet", "--workers", "1", "--segment-seconds", "4"]
                         + _group_args(group, tiny_model, musicnn_dir, card), capsys)
        assert code == 2 and len(err) == 1, (group, err)
        assert not store.exists()
        lines[group] = err[0]
    assert len(set(lines.values())) == 1, lines
    line = lines["inception_v3"]
    assert line.startswith("emodist: error: --device: cuda: onnxruntime ")
    assert "has no CUDAExecutionProvider" in line


@no_cuda
def test_device_reaches_every_model_group_on_the_worker(demo_dataset, tiny_model, musicnn_dir,
                                                        tmp_path):
    """A chunk computed with ``device="cuda"`` fails in the group's model call, in one line.

    Each model group, MusiCNN and cards included, runs on the worker's device:
    none quietly falls back to the CPU.  The same chunk on the CPU is computed.
    """
    from emodist.data.catalog import load_dataset
    from emodist.engine.extract import resolve_spec
    from emodist.engine.worker import ChunkTask, Job, compute_chunk
    from emodist.features.card import CardGroup, load_card
    from emodist.features.inception import InceptionV3
    from emodist.features.musicnn import MusiCNN
    from emodist.models.devices import device_problem
    from emodist.spec import ExtractionSpec, Runtime

    groups = {"inception_v3": InceptionV3(model=tiny_model),
              "musicnn_msd": MusiCNN(variant="msd", outputs=("taggram",), model_dir=musicnn_dir),
              "musicnn_mtt": MusiCNN(variant="mtt", outputs=("taggram",), model_dir=musicnn_dir),
              "card": CardGroup(card=load_card(write_card(tmp_path / "card")))}
    path = str(load_dataset(str(demo_dataset)).tracks["path"].iloc[0])
    rows = (("t", path, 0.0, 4.0), ("t", path, 4.0, 4.0))
    outcome = {}
    for label, group in groups.items():
        spec = resolve_spec(ExtractionSpec(groups=(group,), segment_seconds=4.0), Runtime())
        task = ChunkTask(0, 0, 2, rows, (group.name,))
        values, status, _ = compute_chunk(task, Job("unused", spec, batch_size=2))
        assert list(status[group.name]) == [1, 1] and np.isfinite(values[group.name]).all()
        try:
            compute_chunk(task, Job("unused", spec, batch_size=2, device="cuda"))
            outcome[label] = "computed, on the CPU"
        except ModelError as exc:
            outcome[label] = f"--{exc.param}: {exc.message}"
    line = f"--device: cuda: {device_problem('cuda')}"
    assert "\n" not in line and outcome == dict.fromkeys(groups, line)


def test_runner_gives_the_model_outputs_in_batches_with_io_binding_alike(tmp_path):
    """``run_model`` on a two-output model equals onnxruntime run directly, in any batch size;
    the I/O binding the CUDA path uses gives the same outputs on the CPU device."""
    from emodist.models.devices import run_bound

    model = logmel_model(tmp_path / "m.onnx", seed=2)
    sha = hashlib.sha256(Path(model).read_bytes()).hexdigest()
    meta = {"input_name": "x", "output_name": "emb", "output_dim": EMB}
    x = np.random.default_rng(0).standard_normal((7, FRAMES, MELS)).astype(np.float32)
    direct = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"]).run(
        ["peak", "emb"], {"x": x})
    for bs in (1, 3, 7, 32):
        got = WorkerContext(threads=1, batch_size=bs).run_model(model, x, ["peak", "emb"], sha,
                                                                meta=meta)
        assert list(got) == ["peak", "emb"]
        for name, want in zip(got, direct):
            assert got[name].dtype == np.float32 and got[name].shape == want.shape
            np.testing.assert_allclose(got[name], want, rtol=1e-6, atol=1e-6)
    sess = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    bound = run_bound(sess, "x", ["peak", "emb"], x[:3], "cpu", 0)
    for got, want in zip(bound, direct):
        np.testing.assert_allclose(got, want[:3], rtol=1e-6, atol=1e-6)
    with pytest.raises(ModelError, match="not the requested"):
        WorkerContext().run_model(model, x, ["emb"], "0" * 64, meta=meta)


# ----------------------------------------------------------------- options per group


@dataclass(frozen=True)
class Probe(FeatureGroup):
    """A group whose fields are named like other groups' options."""

    name: ClassVar[str] = "probe"
    options: ClassVar[dict[str, str]] = {"probe_size": "size"}
    model: str | None = None
    outputs: tuple = ()
    model_dir: str | None = None
    size: int = 1

    def feature_names(self) -> list[str]:
        return [f"probe_{i}" for i in range(self.size)]

    def prepare(self, segment) -> np.ndarray:
        return np.zeros(self.size, np.float32)


def test_a_group_takes_only_the_options_it_declares(clean_registry, tiny_model, musicnn_dir):
    from emodist.cli import build_parser
    from emodist.cli.extract import spec_and_runtime
    from emodist.features import make_group

    register("probe", Probe)
    args = build_parser().parse_args([
        "extract", "data", "--store", "s.zarr", "--features", "probe", "inception_v3",
        "musicnn_mtt", "--model", tiny_model, "--musicnn-dir", musicnn_dir,
        "--musicnn-outputs", "penultimate", "--image-scale", "mel"])
    probe, inception, mtt = spec_and_runtime(args)[0].groups
    assert probe == Probe()  # no --model, --musicnn-outputs or --musicnn-dir in its fields
    assert inception.model == tiny_model and inception.image_scale == "mel"
    assert mtt.outputs == ("penultimate",) and mtt.model_dir == musicnn_dir
    assert make_group("probe", {"probe_size": 3, "model": "/x.onnx"}) == Probe(size=3)
    register("probe", Bound(Probe, size=2))  # a fixed field takes no option
    assert make_group("probe", {"probe_size": 3}) == Probe(size=2)


# ----------------------------------------------------------------- hashes and cards, on the driver


@pytest.mark.parametrize("flag", ["--model", "--musicnn-dir"])
def test_a_sidecar_of_another_file_is_refused_before_the_store_exists(
        flag, small_dataset, tiny_model, musicnn_dir, tmp_path, capsys):
    if flag == "--model":
        model = tmp_path / "inception.onnx"
        shutil.copy(tiny_model, model)
        shutil.copy(tiny_model + ".json", str(model) + ".json")
        args = ["--features", "inception_v3", "--model", str(model)]
    else:
        model = tmp_path / "musicnn_mtt.onnx"
        for ext in ("", ".json"):
            shutil.copy(f"{musicnn_dir}/musicnn_mtt.onnx{ext}", f"{model}{ext}")
        args = ["--features", "musicnn_mtt", "--musicnn-dir", str(tmp_path)]
    side = Path(str(model) + ".json")
    wrong = hashlib.sha256(b"another model").hexdigest()
    side.write_text(json.dumps(dict(json.loads(side.read_text()), sha256=wrong)))
    store = tmp_path / "s.zarr"
    code, err = _cli(["extract", str(small_dataset), "--store", str(store), "--quiet",
                      "--workers", "1", "--segment-seconds", "4"] + args, capsys)
    assert code == 2 and len(err) == 1, err
    actual = hashlib.sha256(model.read_bytes()).hexdigest()
    assert err[0].startswith(f"emodist: error: {flag}: model {model} has sha256 {actual[:12]}..., "
                             f"not its sidecar's {wrong[:12]}...")
    assert not store.exists()


def test_cards_escaping_their_folder_or_without_a_hash_are_refused(small_dataset, tmp_path,
                                                                   capsys, clean_registry):
    folder = tmp_path / "cards"
    good = write_card(folder)
    text = good.read_text()
    logmel_model(tmp_path / "x.onnx")  # a model beside the card's folder, not in it
    escaping = folder / "escaping.toml"
    escaping.write_text(text.replace('model = "m.onnx"', 'model = "../x.onnx"'))
    unhashed = folder / "unhashed.toml"
    unhashed.write_text("\n".join(line for line in text.splitlines()
                                  if not line.startswith("sha256")))
    wants = {escaping: "model '../x.onnx' leaves the card's folder",
             unhashed: "lacks 'sha256'"}
    for card, want in wants.items():
        store = tmp_path / f"{card.stem}.zarr"
        code, err = _cli(["extract", str(small_dataset), "--store", str(store), "--features",
                          "mymodel", "--model-card", str(card), "--quiet",
                          "--workers", "1", "--segment-seconds", "4"], capsys)
        assert code == 2 and len(err) == 1, err
        assert err[0].startswith(f"emodist: error: --model-card: model card {card}: {want}")
        assert not store.exists()
    absolute = folder / "absolute.toml"  # an absolute path is taken as given
    absolute.write_text(text.replace('model = "m.onnx"', f'model = "{folder / "m.onnx"}"'))
    from emodist.features.card import load_card

    assert load_card(absolute).model == str(folder / "m.onnx")
