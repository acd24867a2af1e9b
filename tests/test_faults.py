"""Faults and damaged inputs: each is one WeightlabError naming the file and the fix, and no partial output is left."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import numpy as np
import pytest

from weightlab.errors import InputError, OutputError
from weightlab.io import atomic_path, mount_point, read_json, read_npz, write_error, write_folder_atomically, write_json, write_npz


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- disk full and permissions: the atomic writers -------------------------------------------------------------------

def failing_write(code: int):
    def write_text(self, *args, **kwargs):
        self.open("w").write("partial")  # something reached the disk before the failure
        raise OSError(code, os.strerror(code))
    return write_text


def test_a_full_disk_names_the_device_and_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "write_text", failing_write(errno.ENOSPC))
    target = tmp_path / "results" / "summary.json"
    with pytest.raises(OutputError) as info:
        write_json(target, {"a": 1})
    assert str(info.value).startswith(f"no space left on {mount_point(tmp_path)} writing {target};")
    assert leftovers(target.parent) == []


def test_an_old_result_survives_a_failed_rewrite(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    write_json(target, {"old": True})
    monkeypatch.setattr(Path, "write_text", failing_write(errno.ENOSPC))
    with pytest.raises(OutputError):
        write_json(target, {"new": True})
    monkeypatch.undo()
    assert read_json(target) == {"old": True} and leftovers(tmp_path) == ["summary.json"]


def test_a_writer_without_an_errno_on_a_full_disk_is_a_full_disk(tmp_path, monkeypatch):
    """torch.save reports ENOSPC as RuntimeError('unexpected pos ...'), without an errno."""
    import weightlab.io as io

    monkeypatch.setattr(io, "_disk_full", lambda folder: True)
    target = tmp_path / "model.pt"
    with pytest.raises(OutputError, match=f"no space left on .* writing {target}"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"PK\x03\x04")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert leftovers(tmp_path) == []
    monkeypatch.setattr(io, "_disk_full", lambda folder: False)  # with space left it is not a disk problem
    with pytest.raises(RuntimeError, match="unexpected pos"):
        with atomic_path(target):
            raise RuntimeError("unexpected pos 576 vs 534")


@pytest.mark.parametrize("code, expected", [
    (errno.EACCES, "permission denied on"), (errno.EPERM, "permission denied on"), (errno.EROFS, "is a read-only file system"),
])
def test_permission_and_read_only_failures_are_one_line(tmp_path, monkeypatch, code, expected):
    monkeypatch.setattr(Path, "mkdir", lambda self, **kwargs: (_ for _ in ()).throw(OSError(code, os.strerror(code), str(self))))
    target = tmp_path / "results" / "x.npz"
    with pytest.raises(OutputError) as info:
        write_npz(target, a=np.zeros(3))
    message = str(info.value)
    assert message.startswith(f"cannot write {target}:") and expected in message and "\n" not in message


def test_a_folder_written_atomically_reports_a_full_disk_and_leaves_nothing(tmp_path):
    def fill(tmp: Path) -> None:
        (tmp / "weights.safetensors").write_bytes(b"0" * 10)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OutputError, match=f"no space left on .* writing {tmp_path / 'model'};"):
        write_folder_atomically(tmp_path / "model", fill)
    assert leftovers(tmp_path) == []


def test_other_failures_and_our_own_errors_pass_through_unchanged(tmp_path):
    assert write_error(ValueError("bad"), tmp_path / "x") is None
    assert write_error(InputError("x is damaged"), tmp_path / "x") is None
    with pytest.raises(InputError, match="x is damaged"):
        with atomic_path(tmp_path / "x"):
            raise InputError("x is damaged")
    assert leftovers(tmp_path) == []


def test_mount_point_of_a_path_not_yet_made_is_its_file_systems():
    assert mount_point("/proc/self/not/yet/there") == Path("/proc")
    assert mount_point("/") == Path("/")


# --- damaged derived files: the shared readers ------------------------------------------------------------------------

def test_a_truncated_or_foreign_npz_is_an_input_error_with_the_fix(tmp_path):
    path = tmp_path / "images.npz"
    write_npz(path, train_images=np.arange(1000, dtype=np.uint8))
    whole = path.read_bytes()
    for damaged in (whole[: len(whole) // 2], b"not a zip", whole[:100] + b"\0" * 400 + whole[500:]):
        path.write_bytes(damaged)
        with pytest.raises(InputError, match=f"{path} is damaged or truncated .*; delete it and re-run"):
            read_npz(path)
    write_npz(path, train_images=np.zeros(2))
    with pytest.raises(InputError, match=r"lacks the arrays \['test_images'\]; .* delete it and re-run"):
        read_npz(path, keys=("train_images", "test_images"))


def test_a_damaged_json_is_an_input_error_with_the_fix(tmp_path):
    path = tmp_path / "x.json"
    for damaged in (b'{"a": [1, 2', b"\xff\xfe\x00binary"):
        path.write_bytes(damaged)
        with pytest.raises(InputError, match=f"{path} is not valid JSON .*; delete it and re-run its rule"):
            read_json(path)


# --- damaged or untrusted image archives --------------------------------------------------------------------------

def test_a_damaged_fashion_mnist_archive_says_how_to_restore_it(tmp_path):
    import gzip

    from weightlab.vision.data import read_idx

    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 200]) + bytes(range(200))))
    assert read_idx(path).tolist() == list(range(200))
    whole = path.read_bytes()
    for damaged in (whole[: len(whole) // 2], whole[:20] + b"\xff" * 40 + whole[60:], b"\x1f\x8b" + b"\0" * 30):
        path.write_bytes(damaged)
        with pytest.raises(InputError, match=rf"{path} is damaged .*apt-get install --reinstall dataset-fashion-mnist"):
            read_idx(path)


def write_cifar_like(folder: Path, batch: object) -> dict[str, str]:
    import pickle

    from weightlab.io import file_md5

    folder.mkdir(exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(batch))
    return {name: file_md5(folder / name) for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]}


def test_a_cifar_batch_is_not_unpickled_unless_its_md5_is_the_published_one(tmp_path):
    from weightlab.vision.data import load_cifar10

    write_cifar_like(tmp_path / "cifar-10-batches-py", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})
    with pytest.raises(InputError, match=r"data_batch_1 has md5 \w+, not the published c99cafc152244af753f735de768cd75f.*"
                                         r"cifar-10-python.tar.gz"):
        load_cifar10(tmp_path)


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_that_would_run_code_is_refused_even_with_a_matching_md5(tmp_path, monkeypatch):
    import weightlab.vision.data

    checksums = write_cifar_like(tmp_path / "cifar-10-batches-py", {b"data": Exploit(), b"labels": [0]})
    monkeypatch.setattr(weightlab.vision.data, "CIFAR10_MD5", checksums)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"data_batch_1 is not a plain pickle of arrays \(refused to load posix.system\)"):
        weightlab.vision.data.load_cifar10(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_a_cifar_batch_of_the_wrong_shape_is_named(tmp_path, monkeypatch):
    import weightlab.vision.data

    checksums = write_cifar_like(tmp_path / "cifar-10-batches-py", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    monkeypatch.setattr(weightlab.vision.data, "CIFAR10_MD5", checksums)
    with pytest.raises(InputError, match=r"data_batch_1 is not a CIFAR-10 batch"):
        weightlab.vision.data.load_cifar10(tmp_path)


# --- checkpoints -------------------------------------------------------------------------------------------------------

@pytest.fixture()
def checkpoint(tmp_path) -> Path:
    import torch

    from weightlab.checkpoints import save_checkpoint
    from weightlab.rebasin.models import ConvNet

    torch.manual_seed(0)
    path = tmp_path / "model_A1.pt"
    save_checkpoint(path, ConvNet(width=4, hidden=8), "convnet", {"width": 4, "hidden": 8})
    return path


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "empty", "text"])
def test_a_damaged_checkpoint_names_the_file_and_the_fix(checkpoint, damage):
    from weightlab.checkpoints import load_checkpoint
    from weightlab.rebasin.models import ARCHITECTURES

    whole = checkpoint.read_bytes()
    checkpoint.write_bytes({"truncated": whole[: len(whole) // 2], "zeroed": whole[:64] + b"\0" * (len(whole) - 64),
                            "empty": b"", "text": b"not a checkpoint"}[damage])
    with pytest.raises(InputError, match=rf"^checkpoint {checkpoint} is damaged or truncated .*; delete it and re-run"):
        load_checkpoint(checkpoint, ARCHITECTURES)


def test_a_checkpoint_whose_weights_do_not_fit_its_model_is_named(checkpoint):
    import torch

    from weightlab.checkpoints import load_checkpoint
    from weightlab.rebasin.models import ARCHITECTURES

    payload = torch.load(checkpoint, weights_only=True)
    payload["arch_kwargs"]["width"] = 5
    torch.save(payload, checkpoint)
    with pytest.raises(InputError, match=rf"^checkpoint {checkpoint} does not rebuild its model .*; delete it and re-run"):
        load_checkpoint(checkpoint, ARCHITECTURES)


# --- edit sets -------------------------------------------------------------------------------------------------------

LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2])
PREDICTIONS = np.array([0, 1, 2, 1, 0, 2, 0, 0])  # wrong: 1, 2, 4, 6, 7


@pytest.fixture()
def edit_set_file(tmp_path) -> Path:
    from weightlab.repair.editsets import draw_edit_set

    path = tmp_path / "class_homogeneous_incorrect-c2-n10.json"
    write_json(path, draw_edit_set("class_homogeneous_incorrect", 10, LABELS, PREDICTIONS, seed=0, target_class=2).to_json())
    return path


def edit(path: Path, **changes) -> None:
    write_json(path, {**read_json(path), **changes})


def test_an_intact_edit_set_reads_back(edit_set_file):
    from weightlab.repair.editsets import read_edit_set

    edit_set = read_edit_set(edit_set_file, LABELS, PREDICTIONS)
    assert edit_set.indices.tolist() == [6, 7] and edit_set.target_class == 2


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"indices": [6, 8], "actual_size": 2}, r"indices \[8\] are outside the test split \(0\.\.7\)"),
        ({"indices": [-1, 6], "actual_size": 2}, r"indices \[-1\] are outside the test split"),  # not the last image
        ({"indices": [6, 6], "actual_size": 2}, r"'indices' repeats images"),
        ({"indices": [6, 7.5], "actual_size": 2}, r"'indices' must be integers"),
        ({"indices": [5, 6], "actual_size": 2}, r"test images \[5\] are not class_homogeneous_incorrect images of the base "
                                                r"model \(class 2\)"),
        ({"indices": [6], "actual_size": 2}, r"actual_size 2 but 1 indices"),
        ({"set_type": "everything"}, r"unknown set_type 'everything'"),
        ({"seed": None}, r"is not a complete edit set"),
    ],
    ids=["past-the-end", "negative", "repeated", "float", "wrong-kind", "size", "type", "incomplete"],
)
def test_an_edit_set_edited_by_hand_is_refused_naming_the_file_and_the_fix(edit_set_file, changes, expected):
    from weightlab.repair.editsets import read_edit_set

    edit(edit_set_file, **changes)
    with pytest.raises(InputError, match=rf"^{edit_set_file}: {expected}.*; delete {edit_set_file} and re-run|"
                                         rf"^{edit_set_file} {expected}.*; delete {edit_set_file} and re-run"):
        read_edit_set(edit_set_file, LABELS, PREDICTIONS)


# --- neuron groups ---------------------------------------------------------------------------------------------------

MODULE = "model.layers.0.mlp.up_proj"
SIZES = {MODULE: 10, "model.layers.0.self_attn.q_proj": 4}


@pytest.fixture()
def group_file(tmp_path) -> Path:
    from weightlab.drift.groups import group_to_json

    path = tmp_path / "neuron_groups_snip_top.json"
    write_json(path, group_to_json({MODULE: np.array([1, 5])}, "snip_top"))
    return path


def test_an_intact_group_file_reads_back(group_file):
    from weightlab.drift.groups import read_group

    name, group = read_group(group_file, SIZES)
    assert name == "snip_top" and group[MODULE].tolist() == [1, 5]


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"neurons": {MODULE: [1, 10]}, "count": 2}, rf" has rows \[10\] outside {MODULE} \(rows 0\.\.9\)"),
        ({"neurons": {MODULE: [-1, 5]}, "count": 2}, rf" has rows \[-1\] outside {MODULE}"),
        ({"neurons": {MODULE: [5, 5]}, "count": 2}, rf" repeats rows in {MODULE}"),
        ({"neurons": {"model.layers.7.mlp.up_proj": [1]}, "count": 1}, r" names module model\.layers\.7\.mlp\.up_proj"),
        ({"neurons": {MODULE: [1.0, 5]}}, r": the ids of .* must be a list of integers"),
        ({"count": 3}, r": count 3 but 2 ids"),
        ({"group": "favourites"}, r" is not a neuron-group file"),
    ],
    ids=["past-the-end", "negative", "repeated", "foreign-module", "float", "count", "name"],
)
def test_a_group_file_edited_by_hand_is_refused_naming_the_file_and_the_fix(group_file, changes, expected):
    from weightlab.drift.groups import read_group

    edit(group_file, **changes)
    with pytest.raises(InputError, match=rf"^{group_file}{expected}.*; delete {group_file} and re-run"):
        read_group(group_file, SIZES)


# --- converted backbone folders ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory) -> Path:
    """A folder as rule lm_backbone makes one (weights, config, tokenizer, manifest), of a tiny random Llama."""
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    words = ["<unk>", "<pad>", "the", "capital", "of", "france", "is", "paris"]
    raw = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    raw.pre_tokenizer = Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", pad_token="<pad>")
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32))
    folder = tmp_path_factory.mktemp("backbones") / "tiny"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_json(folder / "backbone.json", {"name": "tiny", "load_from": "."})
    return folder


def damaged_copy(source: Path, target: Path, damage: str) -> Path:
    import shutil

    shutil.copytree(source, target)
    weights = target / "model.safetensors"
    if damage == "no-weights":
        weights.unlink()
    elif damage == "truncated-weights":
        weights.write_bytes(weights.read_bytes()[:-1000])
    elif damage == "garbled-header":
        data = bytearray(weights.read_bytes())
        data[8:40] = b"#" * 32
        weights.write_bytes(bytes(data))
    elif damage == "garbled-config":
        (target / "config.json").write_text('{"model_type": "llama", "hidden_size": "wide"')
    elif damage == "no-tokenizer":
        (target / "tokenizer_config.json").unlink()
    elif damage == "no-manifest":
        (target / "backbone.json").unlink()
    elif damage == "garbled-manifest":
        (target / "backbone.json").write_text("{")
    return target


def test_an_intact_backbone_folder_loads(tiny_backbone):
    from weightlab.lm.backbone import load_backbone

    backbone = load_backbone(tiny_backbone)
    assert backbone.name == "tiny" and backbone.model.config.hidden_size == 16


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("no-weights", r"is incomplete \(missing model\.safetensors\)"),
        ("truncated-weights", r"is damaged \(model\.safetensors holds \d+ bytes, its header promises \d+\)"),
        ("garbled-header", r"is damaged \(model\.safetensors has no valid header|is damaged \(model\.safetensors is unreadable"),
        ("garbled-config", r"is damaged and does not load"),
        ("no-tokenizer", r"is incomplete \(missing tokenizer_config\.json\)"),
        ("no-manifest", r"is incomplete \(no backbone\.json\)"),
        ("garbled-manifest", r"is damaged \(backbone\.json is not valid JSON\)"),
    ],
)
def test_a_damaged_backbone_folder_says_to_rebuild_it_not_to_fill_the_hub_cache(tiny_backbone, tmp_path, damage, expected):
    from weightlab.lm.backbone import load_backbone

    folder = damaged_copy(tiny_backbone, tmp_path / "tiny", damage)
    with pytest.raises(InputError) as info:
        load_backbone(folder)
    message = str(info.value)
    assert message.startswith(f"backbone folder {folder} ") and re.search(expected, message), message
    assert message.endswith(f"rebuild it: delete the folder {folder} and re-run, Snakemake makes it again.")
    assert "cache" not in message and "\n" not in message


def test_an_image_archive_without_its_arrays_or_of_the_wrong_shapes_is_named():
    from weightlab.vision.data import dataset_from_arrays

    whole = {"name": np.array("x"), "classes": np.array(["a", "b"]), "train_images": np.zeros((3, 1, 32, 32), np.uint8),
             "train_labels": np.zeros(3, np.int64), "test_images": np.zeros((2, 1, 32, 32), np.uint8), "test_labels": np.zeros(2)}
    assert len(dataset_from_arrays(whole).train) == 3
    with pytest.raises(InputError, match=r"lacks the arrays \['test_labels'\]; delete results/data/images\.npz and re-run"):
        dataset_from_arrays({k: v for k, v in whole.items() if k != "test_labels"})
    with pytest.raises(InputError, match=r"train split has images \(3, 1, 32, 32\) and labels \(2,\); delete"):
        dataset_from_arrays({**whole, "train_labels": np.zeros(2)})
