"""Tests of ingestion (mixnn_core.ingest) and the shard format (mixnn_core.shards).

Real benchmark data is read from ``$MIXNN_DATA_ROOT`` (default ``../shared/data`` beside the
repository); tests that need it skip when it is absent.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from mixnn_core.ingest import IngestSummary, ingest, load_dataset

DATA_ROOT = Path(os.environ.get("MIXNN_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))
STRING_COLUMNS = ("key", "shard", "given_label_name", "source_ref")


def data_path(*parts: str) -> Path:
    """A path under the benchmark data root; skips the test when it is absent."""
    path = DATA_ROOT.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"benchmark data absent: {path} (set MIXNN_DATA_ROOT)")
    return path


def save_image(path: Path, pixels: np.ndarray) -> None:
    """Write uint8/uint16 pixels as a PNG (mode from the array), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def grey(value: int, size=(8, 8)) -> np.ndarray:
    """A uniform grey uint8 image of the given (H, W)."""
    return np.full(size, value, dtype=np.uint8)


def tables(out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(dataset table, quarantine table) of an ingestion."""
    return pd.read_parquet(out_dir / "dataset.parquet"), pd.read_parquet(out_dir / "quarantine.parquet")


def checked_tables(summary: IngestSummary, out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tables, after checking they agree with the summary and have the promised schema."""
    dataset, quarantine = tables(out_dir)
    assert summary.n_ingested + summary.n_quarantined == summary.n_input
    assert (len(dataset), len(quarantine)) == (summary.n_ingested, summary.n_quarantined)
    assert dataset["sample_id"].dtype == np.int64 and dataset["given_label"].dtype == np.int64
    assert dataset["sample_id"].tolist() == list(range(len(dataset)))
    assert all(pd.api.types.is_string_dtype(dataset[name]) for name in STRING_COLUMNS)
    assert list(quarantine.columns) == ["sample", "source_ref", "reason"]
    assert all(pd.api.types.is_string_dtype(quarantine[name]) for name in quarantine.columns)
    assert json.loads((out_dir / "ingest_summary.json").read_text()) == summary.to_dict()
    assert json.loads((out_dir / "classes.json").read_text()) == summary.class_names
    return dataset, quarantine


def reasons(quarantine: pd.DataFrame, by: str = "sample") -> dict[str, str]:
    """Quarantine reasons keyed by the ``sample`` (or ``source_ref``) column."""
    return dict(zip(quarantine[by], quarantine["reason"]))


def shard_hashes(out_dir: Path) -> dict[str, str]:
    """sha256 of every shard file, by file name."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in (out_dir / "shards").iterdir()}


@pytest.fixture(scope="module")
def digits_out(tmp_path_factory) -> tuple[Path, IngestSummary]:
    out_dir = tmp_path_factory.mktemp("digits")
    return out_dir, ingest("digits", out_dir, shard_size=500)


# --- digits, shard format, reproducibility, load_dataset ----------------------------------------


def test_digits_round_trip(digits_out):
    out_dir, summary = digits_out
    assert (summary.n_input, summary.n_quarantined, summary.source_kind) == (1797, 0, "digits")
    assert summary.image_shape == (1, 8, 8) and summary.class_names == [str(d) for d in range(10)]
    dataset, quarantine = checked_tables(summary, out_dir)
    assert quarantine.empty
    images, table = load_dataset(out_dir)
    digits = load_digits()
    assert images.dtype == np.uint8 and images.shape == (1797, 1, 8, 8)
    np.testing.assert_array_equal(images[:, 0], np.round(digits.images * 255 / 16).astype(np.uint8))
    np.testing.assert_array_equal(table["given_label"], digits.target)
    assert table["given_label_name"].tolist() == [str(d) for d in digits.target]
    assert table["source_ref"].tolist() == [str(i) for i in range(1797)]
    assert table["key"].tolist()[:2] == ["00000000", "00000001"]
    assert table["shard"].value_counts().sort_index().to_dict() == {
        "shard-000000.tar": 500, "shard-000001.tar": 500, "shard-000002.tar": 500, "shard-000003.tar": 297,
    }


def test_shard_members(digits_out):
    out_dir, _ = digits_out
    with tarfile.open(out_dir / "shards" / "shard-000001.tar") as tar:
        names = tar.getnames()[:3]
        assert names == ["00000500.cls", "00000500.json", "00000500.png"]
        label = int(tar.extractfile(names[0]).read())
        meta = json.loads(tar.extractfile(names[1]).read())
        with Image.open(io.BytesIO(tar.extractfile(names[2]).read())) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "L", (8, 8))
    assert label == load_digits().target[500]
    assert meta == {"sample_id": 500, "source_ref": "500"}


def test_shards_are_byte_reproducible(digits_out, tmp_path):
    out_dir, _ = digits_out
    ingest("digits", tmp_path, shard_size=500)
    first, second = shard_hashes(out_dir), shard_hashes(tmp_path)
    assert len(first) == 4 and first == second


def test_ingest_rewrites_an_existing_ingestion(digits_out, tmp_path):
    out_dir, _ = digits_out
    ingest("digits", tmp_path, shard_size=500)
    summary = ingest("digits", tmp_path, shard_size=1000)
    assert sorted(path.name for path in (tmp_path / "shards").iterdir()) == ["shard-000000.tar", "shard-000001.tar"]
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []
    assert load_dataset(tmp_path)[0].shape == (summary.n_ingested, 1, 8, 8)


def test_load_dataset_detects_missing_and_extra_samples(digits_out, tmp_path):
    out_dir, _ = digits_out
    missing_shard = tmp_path / "missing_shard"
    shutil.copytree(out_dir, missing_shard)
    (missing_shard / "shards" / "shard-000001.tar").unlink()
    with pytest.raises(ValueError, match="expects '00000500' in shard-000001.tar"):
        load_dataset(missing_shard)

    short_table = tmp_path / "short_table"
    shutil.copytree(out_dir, short_table)
    table = pd.read_parquet(short_table / "dataset.parquet")
    table.iloc[:-1].to_parquet(short_table / "dataset.parquet", index=False)
    with pytest.raises(ValueError, match="shard-000003.tar: extra sample '00001796'"):
        load_dataset(short_table)

    with pytest.raises(FileNotFoundError, match="no complete ingestion"):
        load_dataset(tmp_path / "nothing")


# --- image folder ----------------------------------------------------------------------------


def test_image_folder_with_bad_and_odd_files(tmp_path):
    root = tmp_path / "folder"
    save_image(root / "cat" / "a.png", grey(10))
    save_image(root / "cat" / "b.png", grey(20))
    save_image(root / "cat" / "sub" / "c.png", grey(30))
    save_image(root / "cat" / "big.png", grey(40, size=(10, 12)))
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128  # half-transparent red
    save_image(root / "cat" / "rgba.png", rgba)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(buffer, "PNG")
    (root / "cat" / "corrupt.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (root / "dog").mkdir()
    (root / "dog" / "empty.png").write_bytes(b"")
    (root / "dog" / "notes.png").write_text("not an image")
    save_image(root / "dog" / "deep16.png", np.array([[0, 65535], [32896, 257]] * 4, dtype=np.uint16).repeat(4, 1))
    save_image(root / "dog" / "d.png", grey(50))
    save_image(root / "dog" / ".hidden.png", grey(60))
    (root / "emu").mkdir()
    (root / "README.txt").write_text("a root-level file belongs to no class")

    summary = ingest(root, tmp_path / "out")
    dataset, quarantine = checked_tables(summary, tmp_path / "out")
    assert (summary.n_input, summary.n_ingested, summary.n_quarantined, summary.n_resized) == (11, 7, 4, 1)
    assert summary.class_names == ["cat", "dog", "emu"] and summary.image_shape == (3, 8, 8)
    refs = ["cat/a.png", "cat/b.png", "cat/big.png", "cat/rgba.png", "cat/sub/c.png", "dog/d.png", "dog/deep16.png"]
    assert dataset["source_ref"].tolist() == refs
    assert dataset["given_label_name"].tolist() == ["cat"] * 5 + ["dog"] * 2
    why = reasons(quarantine)
    assert why.keys() == {"cat/corrupt.png", "dog/empty.png", "dog/notes.png", "README.txt"}
    assert why["cat/corrupt.png"].startswith("cannot decode image")
    assert why["dog/notes.png"].startswith("cannot decode image")
    assert why["dog/empty.png"].startswith("empty file")
    assert "not inside a class sub-folder" in why["README.txt"]

    images, _ = load_dataset(tmp_path / "out")
    assert (images[refs.index("cat/a.png")] == 10).all()  # grey spread over 3 channels
    assert images[refs.index("cat/rgba.png"), :, 0, 0].tolist() == [128, 0, 0]  # composited on black
    assert (images[refs.index("cat/big.png")] == 40).all()  # resized
    deep = images[refs.index("dog/deep16.png"), 0]
    assert deep[0, [0, 4]].tolist() == [0, 255] and deep[1, [0, 4]].tolist() == [128, 1]  # scaled, not clipped


# --- manifests -------------------------------------------------------------------------------


def test_csv_manifest_with_names(tmp_path):
    folder = tmp_path / "manifest"
    for i in range(6):
        save_image(folder / "images" / f"{i}.png", grey(10 * i))
    save_image(tmp_path / "outside.png", grey(99))
    (folder / "images" / "link.png").symlink_to(tmp_path / "outside.png")
    rows = [
        ("images/0.png", "cat"),
        ("images/1.png", "dog"),
        ("images/2.png", "cat"),
        ("images/missing.png", "dog"),
        ("images/3.png", "bird"),
        ("../outside.png", "cat"),
        (str(tmp_path / "outside.png"), "dog"),
        ("images/link.png", "cat"),
        ("images/0.png", "cat"),  # the same image again: a separate sample
        ("images/4.png", ""),
        ("images/5.png", "dog"),
    ]
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(folder / "manifest.csv", index=False)

    summary = ingest(folder / "manifest.csv", tmp_path / "out", class_names=["cat", "dog"])
    dataset, quarantine = checked_tables(summary, tmp_path / "out")
    assert (summary.n_input, summary.n_ingested, summary.source_kind) == (11, 5, "manifest")
    assert summary.image_shape == (1, 8, 8)
    assert dataset["source_ref"].tolist() == ["0", "1", "2", "8", "10"]
    assert dataset["given_label_name"].tolist() == ["cat", "dog", "cat", "cat", "dog"]
    why = reasons(quarantine, by="source_ref")
    assert why["3"] == "file not found: images/missing.png"
    assert "unknown label 'bird'" in why["4"]
    assert all("outside the manifest folder" in why[row] for row in ("5", "6", "7"))
    assert why["9"].startswith("missing label")
    assert reasons(quarantine)["images/missing.png"] == why["3"]
    images, _ = load_dataset(tmp_path / "out")
    np.testing.assert_array_equal(images[0], images[3])


def test_parquet_manifest_with_integer_labels(tmp_path):
    for i in range(6):
        save_image(tmp_path / f"{i}.png", grey(i))
    manifest = pd.DataFrame({"image": [f"{i}.png" for i in range(6)], "target": [0, 1, 2, 1, -1, 7]})
    manifest.to_parquet(tmp_path / "manifest.parquet")

    summary = ingest(tmp_path / "manifest.parquet", tmp_path / "out", class_names=["a", "b", "c"])
    dataset, quarantine = checked_tables(summary, tmp_path / "out")
    assert dataset["given_label"].tolist() == [0, 1, 2, 1]
    assert dataset["given_label_name"].tolist() == ["a", "b", "c", "b"]
    assert reasons(quarantine, by="source_ref") == {"4": "label -1 outside [0, 3)", "5": "label 7 outside [0, 3)"}


def test_class_name_with_nul_is_refused(tmp_path):
    for i in range(2):
        save_image(tmp_path / f"{i}.png", grey(i))
    pd.DataFrame({"image": ["0.png", "1.png"], "label": ["cat", "d\x00g"]}).to_parquet(tmp_path / "m.parquet")
    with pytest.raises(ValueError, match=r"m.parquet: class name 'd\\x00g' holds a NUL character"):
        ingest(tmp_path / "m.parquet", tmp_path / "out")
    with pytest.raises(ValueError, match=r"class_names: class name 'x\\x00' holds a NUL"):
        ingest(tmp_path / "m.parquet", tmp_path / "out", class_names=["cat", "x\x00"])
    assert not (tmp_path / "out").exists()


def test_manifest_without_known_columns_is_refused(tmp_path):
    pd.DataFrame({"foo": ["a.png"], "bar": [1]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(ValueError, match=r"m.csv: no image path column .*columns are \['foo', 'bar'\]"):
        ingest(tmp_path / "m.csv", tmp_path / "out")
    with pytest.raises(ValueError, match=r"no label column 'lbl'"):
        ingest(tmp_path / "m.csv", tmp_path / "out", image_column="foo", label_column="lbl")


# --- npz -------------------------------------------------------------------------------------


def test_npz_float_arrays_with_a_nan_row(tmp_path):
    images = np.full((6, 1, 8, 8), 0.5, dtype=np.float32)  # (N, C, H, W) in [0, 1]
    images[3, 0, 2, 2] = np.nan
    np.savez(tmp_path / "data.npz", images=images, labels=np.array([0, 1, 0, 1, 0, 1]))

    summary = ingest(tmp_path / "data.npz", tmp_path / "out")
    dataset, quarantine = checked_tables(summary, tmp_path / "out")
    assert (summary.n_ingested, summary.image_shape, summary.class_names) == (5, (1, 8, 8), ["0", "1"])
    assert reasons(quarantine) == {"3": "pixel values include NaN or infinity"}
    assert (load_dataset(tmp_path / "out")[0] == 128).all()


def test_npz_colour_arrays_with_class_names(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)  # (N, H, W, C)
    np.savez(tmp_path / "data.npz", x=images, y=np.array([1, 0, 1, 0]), classes=np.array(["plane", "car"]))
    summary = ingest(tmp_path / "data.npz", tmp_path / "out")
    assert (summary.image_shape, summary.class_names) == ((3, 8, 8), ["plane", "car"])
    loaded, table = load_dataset(tmp_path / "out")
    np.testing.assert_array_equal(loaded, images.transpose(0, 3, 1, 2))
    assert table["given_label_name"].tolist() == ["car", "plane", "car", "plane"]


def test_npz_jpeg_layout(tmp_path):
    rng = np.random.default_rng(2)
    encoded = []
    for _ in range(3):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
        encoded.append(buffer.getvalue())
    encoded += [b"", b"\xff\xd8 not really a jpeg"]
    offsets = np.cumsum([0] + [len(item) for item in encoded])
    np.savez(
        tmp_path / "jpeg.npz",
        test_jpeg=np.frombuffer(b"".join(encoded), dtype=np.uint8),
        test_offsets=offsets,
        test_labels=np.array([0, 1, 1, 0, 1], dtype=np.uint8),
        classes=np.array(["a", "b"]),
    )
    summary = ingest(tmp_path / "jpeg.npz", tmp_path / "out", npz_split="test")
    _, quarantine = checked_tables(summary, tmp_path / "out")
    assert (summary.n_ingested, summary.image_shape, summary.source_kind) == (3, (3, 8, 8), "npz")
    why = reasons(quarantine)
    assert why["3"] == "empty image (0 bytes)" and why["4"].startswith("cannot decode image")
    with pytest.raises(ValueError, match="no array 'train_jpeg' for npz_split='train'"):
        ingest(tmp_path / "jpeg.npz", tmp_path / "out2")


# --- labels files ----------------------------------------------------------------------------


def test_labels_file_by_row(tmp_path):
    new_labels = (load_digits().target + 1) % 10
    np.save(tmp_path / "labels.npy", new_labels)
    summary = ingest("digits", tmp_path / "out", labels_file=tmp_path / "labels.npy")
    dataset, _ = checked_tables(summary, tmp_path / "out")
    np.testing.assert_array_equal(dataset["given_label"], new_labels)

    np.save(tmp_path / "short.npy", new_labels[:10])
    with pytest.raises(ValueError, match="short.npy has 10 labels but the source has 1797 samples"):
        ingest("digits", tmp_path / "out2", labels_file=tmp_path / "short.npy")


def test_labels_file_by_key(tmp_path):
    for name in ("a", "b"):
        for i in range(3):
            save_image(tmp_path / "folder" / name / f"{i}.png", grey(i))
    # Swap the classes of every file except b/2.png, which has no entry.
    labels = pd.DataFrame(
        {"file_ref": [f"{name}/{i}.png" for name in "ab" for i in range(3)][:-1], "class": list("bbbaa")}
    )
    labels.to_csv(tmp_path / "labels.csv", index=False)
    summary = ingest(
        tmp_path / "folder", tmp_path / "out", labels_file=tmp_path / "labels.csv", labels_key_column="file_ref"
    )
    dataset, quarantine = checked_tables(summary, tmp_path / "out")
    assert dataset["given_label_name"].tolist() == list("bbbaa")
    assert reasons(quarantine) == {"b/2.png": f"no label in {tmp_path / 'labels.csv'}"}


# --- refusals --------------------------------------------------------------------------------


def test_missing_and_unrecognised_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="source not found: .*nowhere"):
        ingest(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="notes.txt: unrecognised source kind '.txt'"):
        ingest(tmp_path / "notes.txt", tmp_path / "out")
    with pytest.raises(ValueError, match="labels_column and labels_key_column describe a labels_file"):
        ingest("digits", tmp_path / "out", labels_column="label")
    assert not (tmp_path / "out").exists()


def test_empty_dataset_is_refused(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "folder" / name).mkdir(parents=True)
        (tmp_path / "folder" / name / "x.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"all 2 were quarantined \(2 x cannot decode image"):
        ingest(tmp_path / "folder", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_single_class_is_refused(tmp_path):
    save_image(tmp_path / "folder" / "a" / "0.png", grey(0))
    save_image(tmp_path / "folder" / "a" / "1.png", grey(1))
    (tmp_path / "folder" / "b").mkdir()
    with pytest.raises(ValueError, match=r"only 1 class present among 2 ingested samples \(\['a'\]"):
        ingest(tmp_path / "folder", tmp_path / "out")


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    """An idx file of a uint8 array (gzipped when the name ends in .gz)."""
    data = np.array([magic, *array.shape], dtype=">i4").tobytes() + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def test_idx_folder_prefers_train_and_a_file_picks_its_pair(tmp_path):
    for split, n in (("train", 6), ("t10k", 4)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", np.arange(n * 4).reshape(n, 2, 2), 2051)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", np.arange(n) % 2, 2049)
    assert ingest(tmp_path, tmp_path / "train").n_ingested == 6
    summary = ingest(tmp_path / "t10k-images-idx3-ubyte.gz", tmp_path / "test")
    assert (summary.n_ingested, summary.image_shape, summary.source_kind) == (4, (1, 2, 2), "idx")
    np.testing.assert_array_equal(load_dataset(tmp_path / "test")[0].ravel(), np.arange(16))


def test_bad_idx_files_are_named(tmp_path):
    header = np.array([2051, 5, 2, 2], dtype=">i4").tobytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(header + bytes(4 * 4))  # 4 images, header says 5
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(np.array([2049, 5], dtype=">i4").tobytes() + bytes(5))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte: 32 bytes, but its header"):
        ingest(tmp_path, tmp_path / "out")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(np.array([2049, 5, 2, 2], dtype=">i4").tobytes() + bytes(20))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte: idx magic number 2049, expected 2051"):
        ingest(tmp_path, tmp_path / "out")


# --- real benchmark data ---------------------------------------------------------------------


def test_mnist_idx_test_set(tmp_path):
    folder = data_path("mnist")
    raw_labels = np.frombuffer(gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes())[8:], np.uint8)
    summary = ingest(folder, tmp_path, shard_size=5000)
    dataset, _ = checked_tables(summary, tmp_path)
    assert (summary.n_ingested, summary.image_shape, summary.source_kind) == (10000, (1, 28, 28), "idx")
    assert dataset["given_label"].value_counts().sort_index().tolist() == np.bincount(raw_labels).tolist()
    np.testing.assert_array_equal(dataset["given_label"], raw_labels)


@pytest.mark.slow  # about a minute on 2 shared cores: 50,000 JPEG decodes twice plus 50,000 PNG shard samples
def test_cifar10_jpeg_npz_with_cifar10n_labels(tmp_path):
    images_npz = data_path("cifar10", "cifar10_jpeg_q75.npz")
    labels_npz = data_path("cifar10n", "cifar10n_labels.npz")
    summary = ingest(images_npz, tmp_path, labels_file=labels_npz, labels_column="worse_label", shard_size=10000)
    dataset, _ = checked_tables(summary, tmp_path)
    assert (summary.n_ingested, summary.image_shape, summary.num_classes) == (50000, (3, 32, 32), 10)
    with np.load(labels_npz) as noisy, np.load(images_npz) as cifar:
        np.testing.assert_array_equal(dataset["given_label"], noisy["worse_label"])
        assert (dataset["given_label"].to_numpy() != cifar["train_labels"]).mean() == pytest.approx(0.402, abs=0.01)
        assert summary.class_names == cifar["classes"].tolist()
