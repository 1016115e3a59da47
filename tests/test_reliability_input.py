"""Hostile and broken input: every input sample is ingested or quarantined with a reason naming
the problem, and what cannot be handled per sample stops the run with an error naming the file.

Complements tests/test_ingest.py (which covers corrupt, truncated, zero-byte and non-image files,
16-bit and RGBA images, ``..``/absolute/symlinked manifest paths, unknown and out-of-range labels
and NaN pixels); here: more image modes, special files, symlinks in image folders, pickled
arrays, bad label values, duplicate keys, WebDataset tar shards, and whole flow runs.
"""

from __future__ import annotations

import io
import os
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mixnn_core.ingest import ingest, load_dataset
from tests.test_ingest import checked_tables, grey, reasons, save_image


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decompression_bomb_png(side: int = 20000) -> bytes:
    """A 100-byte PNG whose header claims side x side pixels (far above Pillow's limit)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + png_chunk(b"IEND", b""))


class ExplodesWhenUnpickled:
    """Unpickling it creates ``marker``: proof that a file was unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# --- image folders: modes, special files, links --------------------------------------------


def test_image_modes_special_files_and_escaping_links(tmp_path):
    root = tmp_path / "folder"
    save_image(root / "a" / "grey.png", grey(100))
    palette = Image.fromarray(np.tile(np.arange(8, dtype=np.uint8) * 30, (8, 1))).convert("P")
    palette.save(root / "a" / "palette.png", transparency=0)  # index 0 transparent -> black
    Image.fromarray(np.stack([grey(200), grey(255)], axis=-1), mode="LA").save(root / "a" / "la.png")
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(root / "a" / "cmyk.jpg")  # red
    Image.new("1", (8, 8), 1).save(root / "a" / "bits.png")
    (root / "b").mkdir()
    Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32)).save(root / "b" / "float.tif")
    Image.fromarray(np.full((8, 8), 100000, dtype=np.int32)).save(root / "b" / "int32.tif")
    (root / "b" / "bomb.png").write_bytes(decompression_bomb_png())
    os.mkfifo(root / "b" / "fifo.png")
    save_image(tmp_path / "outside.png", grey(7))
    (root / "b" / "escape.png").symlink_to(tmp_path / "outside.png")
    (root / "b" / "dangling.png").symlink_to(root / "b" / "gone.png")
    (root / "b" / "loop1.png").symlink_to(root / "b" / "loop2.png")
    (root / "b" / "loop2.png").symlink_to(root / "b" / "loop1.png")
    (root / "b" / "inside.png").symlink_to(root / "a" / "grey.png")  # stays inside: read
    save_image(tmp_path / "elsewhere" / "c" / "0.png", grey(50))
    (root / "c").symlink_to(tmp_path / "elsewhere" / "c")  # a symlinked class folder is read

    summary = ingest(root, tmp_path / "out")
    dataset, quarantine = checked_tables(summary, tmp_path / "out")
    assert summary.n_input == 15 and summary.image_shape == (3, 8, 8)
    assert dataset["source_ref"].tolist() == [
        "a/bits.png", "a/cmyk.jpg", "a/grey.png", "a/la.png", "a/palette.png", "b/float.tif",
        "b/inside.png", "c/0.png"]
    why = reasons(quarantine)
    assert why["b/int32.tif"] == "pixel values span [100000, 100000], outside [0, 65535]"
    assert why["b/bomb.png"].startswith("cannot decode image: DecompressionBombError")
    assert why["b/fifo.png"] == "not a regular file (a folder, FIFO or device): b/fifo.png"
    assert why["b/escape.png"] == f"image path 'b/escape.png' resolves outside the dataset root {root}"
    assert why["b/dangling.png"] == "file not found: b/dangling.png"
    assert why["b/loop1.png"].startswith("cannot resolve image path 'b/loop1.png'")
    assert why["b/loop2.png"].startswith("cannot resolve image path 'b/loop2.png'")
    images, table = load_dataset(tmp_path / "out")
    pixel = dict(zip(table["source_ref"], images[:, :, 0, 0].tolist()))
    assert pixel["a/bits.png"] == [255] * 3 and pixel["a/la.png"] == [200] * 3
    assert pixel["a/palette.png"] == [0] * 3  # transparent, composited on black
    assert pixel["a/cmyk.jpg"][0] > 240 and max(pixel["a/cmyk.jpg"][1:]) < 15
    assert pixel["b/float.tif"] == [128] * 3 and pixel["c/0.png"] == [50] * 3


# --- arrays and label files ------------------------------------------------------------------


def test_npz_with_infinite_pixels_and_bad_label_values(tmp_path):
    images = np.full((8, 8, 8), 0.25, dtype=np.float64)
    images[1, 0, 0], images[2, 3, 3] = np.inf, -np.inf
    labels = np.array([0, 1, np.nan, np.inf, 1.5, -1, 2, 1])
    np.savez(tmp_path / "data.npz", images=images, labels=labels)
    summary = ingest(tmp_path / "data.npz", tmp_path / "out", class_names=["x", "y", "z"])
    dataset, quarantine = checked_tables(summary, tmp_path / "out")
    assert dataset["source_ref"].tolist() == ["0", "6", "7"]
    assert reasons(quarantine) == {
        "1": "pixel values include NaN or infinity",
        "2": "missing label",
        "3": "label inf is not a whole number",
        "4": "label 1.5 is not a whole number",
        "5": "label -1 outside [0, 3)",
    }


def test_pickled_arrays_are_refused_without_being_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    hostile = np.array([ExplodesWhenUnpickled(marker)] * 3, dtype=object)
    np.savez(tmp_path / "images.npz", images=hostile, labels=np.array([0, 1, 0]))
    with pytest.raises(ValueError, match=r"images\.npz: cannot read npz: .*allow_pickle=False"):
        ingest(tmp_path / "images.npz", tmp_path / "out")
    np.save(tmp_path / "labels.npy", hostile, allow_pickle=True)
    with pytest.raises(ValueError, match=r"labels\.npy: cannot read npy: .*allow_pickle=False"):
        ingest("digits", tmp_path / "out", labels_file=tmp_path / "labels.npy")
    assert not marker.exists()


def test_a_repeated_key_in_a_labels_file_names_the_file_key_and_rows(tmp_path):
    for name in ("a", "b"):
        save_image(tmp_path / "folder" / name / "0.png", grey(1))
    pd.DataFrame({"ref": ["a/0.png", "b/0.png", "a/0.png"], "label": ["a", "b", "b"]}).to_csv(
        tmp_path / "labels.csv", index=False)
    with pytest.raises(ValueError, match=r"labels\.csv: key 'a/0\.png' appears more than once "
                                         r"\(data rows 0 and 2"):
        ingest(tmp_path / "folder", tmp_path / "out", labels_file=tmp_path / "labels.csv",
               labels_key_column="ref")


# --- WebDataset tar shards -------------------------------------------------------------------


def add_member(tar: tarfile.TarFile, name: str, data: bytes = b"", **fields) -> None:
    """A member of any type (``type=tarfile.SYMTYPE``, ``linkname=...``), data for regular files."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for field, value in fields.items():
        setattr(info, field, value)
    tar.addfile(info, io.BytesIO(data) if info.isfile() else None)


def add_sample(tar: tarfile.TarFile, key: str, value: int, label: bytes | None, image: str = "png") -> None:
    add_member(tar, f"{key}.{image}", png_bytes(grey(value)))
    if label is not None:
        add_member(tar, f"{key}.cls", label)


def test_our_own_shards_ingest_back_unchanged(tmp_path):
    first = ingest("digits", tmp_path / "first", shard_size=700)
    again = ingest(tmp_path / "first" / "shards", tmp_path / "again")
    dataset, quarantine = checked_tables(again, tmp_path / "again")
    assert quarantine.empty and again.source_kind == "tar_shards"
    assert (again.n_ingested, again.image_shape) == (first.n_ingested, first.image_shape)
    assert dataset["source_ref"].tolist()[699:701] == ["shard-000000.tar/00000699", "shard-000001.tar/00000700"]
    images, table = load_dataset(tmp_path / "again")
    original_images, original_table = load_dataset(tmp_path / "first")
    np.testing.assert_array_equal(images, original_images)
    np.testing.assert_array_equal(table["given_label"], original_table["given_label"])


def test_hostile_tar_shards(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    with tarfile.open(shards / "part-0.tar", "w", format=tarfile.GNU_FORMAT) as tar:
        add_sample(tar, "good0", 10, b"0")
        add_member(tar, "good0.json", b'{"note": "metadata is ignored"}')
        add_sample(tar, "sub/good1", 20, b" 1\n", image="jpg")
        add_sample(tar, "nolabel", 30, None)
        add_member(tar, "noimage.cls", b"1")
        add_sample(tar, "wordlabel", 40, b"cat")
        add_sample(tar, "longlabel", 40, b"1" * 100)
        add_sample(tar, "../escape", 50, b"0")
        add_sample(tar, "/etc/absolute", 50, b"0")
        add_member(tar, "symlink.png", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        add_member(tar, "symlink.cls", b"0")
        add_sample(tar, "hardlink", 60, b"0")
        add_member(tar, "hardlink2.png", type=tarfile.LNKTYPE, linkname="hardlink.png")
        add_member(tar, "hardlink2.cls", b"0")
        add_member(tar, "device.png", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        add_member(tar, "fifo.png", type=tarfile.FIFOTYPE)
        add_sample(tar, "twice", 70, b"1")
        add_member(tar, "twice.png", png_bytes(grey(71)))
        add_sample(tar, "two_images", 80, b"1")
        add_member(tar, "two_images.jpg", png_bytes(grey(81)))
        add_member(tar, "empty.png", b"")
        add_member(tar, "empty.cls", b"0")
        add_member(tar, "corrupt.png", png_bytes(grey(90))[:30])
        add_member(tar, "corrupt.cls", b"0")
        add_member(tar, "a_folder", type=tarfile.DIRTYPE)  # folders are structure, not samples
    with tarfile.open(shards / "part-1.tar", "w") as tar:
        add_sample(tar, "good0", 11, b"1")  # the same key as in part-0
        add_sample(tar, "good2", 12, b"1")
    (shards / "notes.txt").write_text("not a shard")
    before = sorted(path.name for path in tmp_path.rglob("*"))

    summary = ingest(shards, tmp_path / "out")
    dataset, quarantine = checked_tables(summary, tmp_path / "out")
    assert summary.source_kind == "tar_shards" and summary.class_names == ["0", "1"]
    assert dataset["source_ref"].tolist() == ["part-0.tar/good0", "part-0.tar/sub/good1",
                                              "part-0.tar/hardlink", "part-1.tar/good2"]
    assert dataset["given_label"].tolist() == [0, 1, 0, 1]
    why = reasons(quarantine, by="source_ref")
    assert why.pop("part-0.tar/corrupt").startswith("cannot decode image")
    assert why == {
        "part-0.tar/nolabel": "no cls member (label)",
        "part-0.tar/noimage": "no image member; a sample needs one of "
                              "png, jpg, jpeg, bmp, gif, tif, tiff, webp, ppm, pgm",
        "part-0.tar/wordlabel": "member 'wordlabel.cls' holds 'cat', not an integer label",
        "part-0.tar/longlabel": "member 'longlabel.cls' holds 100 bytes, too long for a label",
        "part-0.tar/../escape": "member '../escape.png' has an absolute or '..' path",
        "part-0.tar//etc/absolute": "member '/etc/absolute.png' has an absolute or '..' path",
        "part-0.tar/symlink": "member 'symlink.png' is a link",
        "part-0.tar/hardlink2": "member 'hardlink2.png' is a link",
        "part-0.tar/device": "member 'device.png' is not a regular file (a device, FIFO or other "
                             "special file)",
        "part-0.tar/fifo": "member 'fifo.png' is not a regular file (a device, FIFO or other "
                           "special file)",
        "part-0.tar/twice": "member 'twice.png' appears twice",
        "part-0.tar/two_images": "2 image members (png, jpg); a sample needs one of "
                                 "png, jpg, jpeg, bmp, gif, tif, tiff, webp, ppm, pgm",
        "part-0.tar/empty": "empty image (0 bytes)",
        "part-1.tar/good0": "duplicate key 'good0': already in part-0.tar",
    }
    # nothing was extracted: the only new files are the ingestion's own
    after = sorted(path.name for path in tmp_path.rglob("*") if "out" not in path.relative_to(tmp_path).parts)
    assert after == before
    images, _ = load_dataset(tmp_path / "out")
    assert images[:, 0, 0, 0].tolist() == [10, 20, 60, 12]


@pytest.mark.parametrize("damage", ["truncated", "gzipped", "empty", "garbage"])
def test_an_unreadable_tar_shard_is_named(tmp_path, damage):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for i in range(3):
            add_sample(tar, f"{i:04d}", i, str(i % 2).encode())
    data = buffer.getvalue()
    broken = {"truncated": data[:2000], "gzipped": zlib.compress(data), "empty": b"",
              "garbage": b"not a tar file at all" * 40}[damage]
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "a.tar").write_bytes(data)
    (tmp_path / "shards" / "b.tar").write_bytes(broken)
    with pytest.raises(ValueError, match=r"shards/b\.tar: unreadable tar shard after \d+ samples"):
        ingest(tmp_path / "shards", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert ingest(tmp_path / "shards" / "a.tar", tmp_path / "out").n_ingested == 3  # one shard alone


# --- whole flow runs on hostile input --------------------------------------------------------

FLOW_OPTIONS = dict(epochs=2, seed=0, train_options={"num_neighbors": 4})


def pattern(label: int, variant: int, size=(8, 8)) -> np.ndarray:
    """A grey image of class ``label``: a bright band at a class-specific row, some noise."""
    rng = np.random.default_rng(100 * label + variant)
    pixels = rng.integers(0, 60, size, dtype=np.uint8)
    pixels[2 * label:2 * label + 2] = 220
    return pixels


def build_hostile_folder(root: Path, outside: Path) -> dict[str, str]:
    """An image folder with classes a, b (12 good images each) and c (2): and hostile files.

    Returns the expected start of the quarantine reason of each hostile file.
    """
    for label, (name, count) in enumerate([("a", 12), ("b", 12), ("c", 2)]):
        for variant in range(count):
            save_image(root / name / f"{variant:02d}.png", pattern(label, variant))
    save_image(root / "a" / "wide.png", pattern(0, 99, size=(8, 12)))  # resized
    save_image(root / "b" / "deep16.png", pattern(1, 99).astype(np.uint16) * 257)
    rgba = np.dstack([np.stack([pattern(1, 98)] * 3, axis=-1), np.full((8, 8), 255, np.uint8)])
    rgba[0, 0] = (255, 0, 0, 128)
    save_image(root / "b" / "rgba.png", rgba)
    (root / "a" / "truncated.png").write_bytes(png_bytes(pattern(0, 97))[:40])
    (root / "a" / "empty.png").write_bytes(b"")
    (root / "b" / "notes.png").write_text("not an image")
    (root / "b" / "bomb.png").write_bytes(decompression_bomb_png())
    save_image(outside, grey(1))
    (root / "a" / "escape.png").symlink_to(outside)
    os.mkfifo(root / "b" / "fifo.png")
    (root / "README.txt").write_text("belongs to no class")
    return {
        "a/truncated.png": "cannot decode image", "a/empty.png": "empty file (0 bytes)",
        "b/notes.png": "cannot decode image: not a recognised image format",
        "b/bomb.png": "cannot decode image: DecompressionBombError",
        "a/escape.png": "image path 'a/escape.png' resolves outside the dataset root",
        "b/fifo.png": "not a regular file", "README.txt": "file is not inside a class sub-folder",
    }


def build_hostile_manifest(folder: Path, outside: Path) -> tuple[Path, dict[str, str]]:
    """A CSV manifest over images in ``folder/images`` with hostile rows; returns its path and
    the expected start of the quarantine reason of each hostile row (by row number)."""
    rows = []
    for label, name in enumerate("abc"):
        for variant in range(12 if name != "c" else 2):
            path = f"images/{name}{variant:02d}.png"
            save_image(folder / path, pattern(label, variant))
            rows.append((path, name))
    save_image(outside, grey(1))
    (folder / "images" / "link.png").symlink_to(outside)
    hostile = [
        (f"../{outside.name}", "a", "image path '../outside.png' resolves outside the manifest folder"),
        (str(outside), "a", f"image path '{outside}' resolves outside the manifest folder"),
        ("images/link.png", "a", "image path 'images/link.png' resolves outside the manifest folder"),
        ("images/missing.png", "b", "file not found: images/missing.png"),
        ("", "b", "missing image path"),
        ("images/a00.png", "", "missing label"),
        ("images/a01.png", "zebra", "unknown label 'zebra'"),
        ("images/a02.png", "7", "unknown label '7'"),
        ("images", "a", "not a regular file"),
    ]
    expected = {str(len(rows) + i): reason for i, (_, _, reason) in enumerate(hostile)}
    rows += [(path, label) for path, label, _ in hostile]
    rows.append(("images/b00.png", "b"))  # the same image twice: a second, separate sample
    path = folder / "manifest.csv"
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(path, index=False)
    return path, expected


def check_accounting(run_dir: Path, n_input: int, expected: dict[str, str], by: str) -> pd.DataFrame:
    """Manifest + quarantine cover every input once, each quarantine reason names its problem."""
    manifest = pd.read_parquet(run_dir / "manifest.parquet")
    quarantine = pd.read_parquet(run_dir / "quarantine.parquet")
    assert len(manifest) + len(quarantine) == n_input
    assert not set(manifest["source_ref"]) & set(quarantine["source_ref"])
    assert quarantine["reason"].str.len().min() > 0
    why = reasons(quarantine, by=by)
    assert why.keys() == expected.keys()
    for key, reason in expected.items():
        assert why[key].startswith(reason), (key, why[key])
    return manifest


def test_flow_on_a_hostile_image_folder_accounts_for_every_file(prefect_server, tmp_path):
    from flows.mixnn_flow import mixnn

    expected = build_hostile_folder(tmp_path / "folder", tmp_path / "outside.png")
    result = mixnn(source=str(tmp_path / "folder"), run_dir=str(tmp_path / "run"), **FLOW_OPTIONS)
    n_input = sum(1 for path in (tmp_path / "folder").rglob("*") if not path.is_dir())
    assert result["counts"] == {"n_input": n_input, "n_ingested": 29, "n_quarantined": 7}
    manifest = check_accounting(tmp_path / "run", n_input, expected, by="sample")
    # class c has 2 samples, fewer than the 4 neighbours each sample is mixed with
    assert (manifest["given_label_name"] == "c").sum() == 2
    assert np.isfinite(manifest["label_quality"]).all()


def test_flow_on_a_hostile_manifest_accounts_for_every_row(prefect_server, tmp_path):
    from flows.mixnn_flow import mixnn

    path, expected = build_hostile_manifest(tmp_path / "data", tmp_path / "outside.png")
    n_rows = len(pd.read_csv(path))
    result = mixnn(source=str(path), run_dir=str(tmp_path / "run"), class_names=["a", "b", "c"],
                   **FLOW_OPTIONS)
    assert result["counts"]["n_input"] == n_rows
    manifest = check_accounting(tmp_path / "run", n_rows, expected, by="source_ref")
    repeated = manifest[manifest["source_ref"].isin(["12", str(n_rows - 1)])]
    assert len(repeated) == 2 and repeated["sample_id"].nunique() == 2  # both rows kept


def test_too_few_samples_for_the_neighbour_count_stops_before_training(prefect_server, tmp_path):
    from flows.mixnn_flow import mixnn

    for label, name in enumerate("ab"):
        for variant in range(2):
            save_image(tmp_path / "folder" / name / f"{variant}.png", pattern(label, variant))
    with pytest.raises(ValueError, match="4 samples cannot have 4 neighbours"):
        mixnn(source=str(tmp_path / "folder"), run_dir=str(tmp_path / "run"), **FLOW_OPTIONS)
    assert not list((tmp_path / "run").glob("checkpoints/*.pt"))


@pytest.mark.parametrize("options, message", [
    ({"lr": "0.1"}, r"lr must be a number, got '0.1' \(str\)"),
    ({"seed": 3}, r"train_options sets \['seed'\]: these are parameters of the flow itself"),
    ({"epochz": 3}, r"unknown configuration fields: \['epochz'\]"),
])
def test_bad_train_options_stop_the_flow_before_any_work(prefect_server, tmp_path, options, message):
    from flows.mixnn_flow import mixnn

    with pytest.raises(ValueError, match=message):
        mixnn(source="digits", run_dir=str(tmp_path / "run"), epochs=2, seed=0, train_options=options)
    assert not (tmp_path / "run").exists()
