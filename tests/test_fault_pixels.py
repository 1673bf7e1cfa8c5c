"""One pixel rule per image mode: real files of every mode decode to exact values or are refused
by name; decompression-bomb headers are refused without decoding (xreal_bench.imaging)."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from mimic_tree import write_mimic_tree
from PIL import Image

from xreal_bench.data.mimic import check_image, scan_mimic
from xreal_bench.imaging import MAX_PIXELS, Geometry, ImageDecodeError, load_grayscale, pil_to_gray
from xreal_bench.importer import import_folder
from xreal_bench.metrics.engine import ImageItem, Preprocessing, RealImages

U8 = np.array([[0, 1, 127], [128, 254, 255]], dtype=np.uint8)
U16 = np.array([[0, 1, 255], [256, 40000, 65535]], dtype=np.uint16)


def tiff_bytes(pixels: np.ndarray, *, sample_format: int, big_endian: bool = False) -> bytes:
    """A baseline one-strip grayscale TIFF with the given SampleFormat (1 unsigned, 2 signed, 3 float)."""
    order = ">" if big_endian else "<"
    height, width = pixels.shape
    data = pixels.astype(pixels.dtype.newbyteorder(order)).tobytes()
    short, long_ = 3, 4
    tags = [
        (256, long_, width), (257, long_, height), (258, short, pixels.dtype.itemsize * 8), (259, short, 1),
        (262, short, 1), (273, long_, 0), (277, short, 1), (278, long_, height), (279, long_, len(data)),
        (339, short, sample_format),
    ]  # fmt: skip
    offset = 8 + 2 + 12 * len(tags) + 4
    ifd = struct.pack(order + "H", len(tags))
    for tag, kind, value in tags:
        value = offset if tag == 273 else value
        field = struct.pack(order + "H", value) + b"\0\0" if kind == short else struct.pack(order + "I", value)
        ifd += struct.pack(order + "HHI", tag, kind, 1) + field
    header = (b"MM" if big_endian else b"II") + struct.pack(order + "HI", 42, 8)
    return header + ifd + struct.pack(order + "I", 0) + data


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` 8-bit grayscale pixels but holds none."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def saved(tmp_path: Path, img: Image.Image, name: str, **kw) -> Path:
    path = tmp_path / name
    img.save(path, **kw)
    return path


def mode_of(path: Path) -> str:
    with Image.open(path) as img:
        return img.mode


def refused(path: Path) -> str:
    with pytest.raises(ImageDecodeError) as err:
        load_grayscale(path)
    assert str(err.value).startswith(f"{path}: ")
    return str(err.value)


# --- accepted modes: exact values ---------------------------------------------------------------


def test_mode_1_is_zero_or_one(tmp_path):
    path = saved(tmp_path, Image.fromarray(np.array([[0, 255, 0], [255, 255, 0]], np.uint8)).convert("1"), "b.png")
    assert mode_of(path) == "1"
    assert load_grayscale(path).tolist() == [[0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]


@pytest.mark.parametrize("name", ["l.png", "l.bmp", "l.tif"])
def test_mode_l_is_divided_by_255(tmp_path, name):
    path = saved(tmp_path, Image.fromarray(U8), name)
    assert mode_of(path) == "L"
    got = load_grayscale(path)
    assert got.dtype == np.float32 and got.tolist() == (U8.astype(np.float32) / np.float32(255)).tolist()


@pytest.mark.parametrize(
    ("name", "big_endian", "mode"), [("u16.png", False, "I;16"), ("u16.tif", False, "I;16"), ("u16b.tif", True, "I;16B")]
)
def test_unsigned_16_bit_is_divided_by_65535(tmp_path, name, big_endian, mode):
    path = tmp_path / name
    if name.endswith(".png"):
        Image.fromarray(U16).save(path)
    else:
        path.write_bytes(tiff_bytes(U16, sample_format=1, big_endian=big_endian))
    assert mode_of(path) == mode
    np.testing.assert_array_equal(load_grayscale(path), U16.astype(np.float32) / np.float32(65535))
    assert load_grayscale(path)[1, 2] == 1.0 and load_grayscale(path)[0, 1] == np.float32(1 / 65535)


@pytest.mark.parametrize("mode", ["I;16L", "I;16N"])
def test_other_unsigned_16_bit_layouts(mode):
    img = Image.frombytes(mode, (3, 2), U16.astype("<u2").tobytes())
    np.testing.assert_array_equal(pil_to_gray(img), U16.astype(np.float32) / np.float32(65535))


@pytest.mark.parametrize("maxval", [65535, 4095])
def test_16_bit_pgm_decodes_to_mode_i_and_the_same_rule(tmp_path, maxval):
    values = np.array([[0, 1, 100], [2048, 4000, 4095]], dtype=np.uint16)
    path = tmp_path / "x.pgm"
    path.write_bytes(f"P5 3 2 {maxval}\n".encode() + values.astype(">u2").tobytes())
    assert mode_of(path) == "I"
    expected = values / 65535.0 if maxval == 65535 else np.round(values / maxval * 65535) / 65535.0  # Pillow's fixed rescale
    np.testing.assert_allclose(load_grayscale(path), expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("sample_format", [1, 2], ids=["uint32", "int32"])
def test_32_bit_integer_in_16_bit_range_is_divided_by_65535(tmp_path, sample_format):
    values = np.array([[0, 7, 255], [256, 40000, 65535]], dtype=np.uint32 if sample_format == 1 else np.int32)
    path = tmp_path / "i32.tif"
    path.write_bytes(tiff_bytes(values, sample_format=sample_format))
    assert mode_of(path) == "I"
    np.testing.assert_array_equal(load_grayscale(path), (values / 65535.0).astype(np.float32))


def test_a_pillow_written_mode_i_tiff_follows_the_same_rule(tmp_path):
    path = saved(tmp_path, Image.fromarray(np.array([[3, 300], [30000, 65535]], np.int32)), "pil.tif")
    assert mode_of(path) == "I"
    np.testing.assert_array_equal(load_grayscale(path), (np.array([[3, 300], [30000, 65535]]) / 65535.0).astype(np.float32))


def test_one_changed_pixel_in_mode_i_changes_only_that_pixel(tmp_path):
    """The old rule divided by 255 or 65535 depending on the maximum: one pixel rescaled the image."""
    dark = np.array([[10, 20, 30], [40, 50, 255]], dtype=np.int32)
    bright = dark.copy()
    bright[0, 0] = 40000
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    a.write_bytes(tiff_bytes(dark, sample_format=2))
    b.write_bytes(tiff_bytes(bright, sample_format=2))
    before, after = load_grayscale(a), load_grayscale(b)
    changed = np.argwhere(before != after).tolist()
    assert changed == [[0, 0]]
    assert after[0, 0] == np.float32(40000 / 65535) and before[1, 2] == after[1, 2] == np.float32(255 / 65535)


def test_float_in_unit_range_is_taken_as_is(tmp_path):
    values = np.array([[0.0, 0.25, 0.5], [0.75, 1.0, 1e-7]], dtype=np.float32)
    path = saved(tmp_path, Image.fromarray(values), "f.tif")
    assert mode_of(path) == "F"
    assert load_grayscale(path).tolist() == values.tolist()


def test_rgb_is_itu_601_luma_rounded_to_8_bits(tmp_path):
    rgb = np.array([[[200, 100, 50], [0, 0, 255]], [[255, 255, 255], [17, 17, 17]]], dtype=np.uint8)
    for name in ("rgb.png", "rgb.bmp"):
        path = saved(tmp_path, Image.fromarray(rgb), name)
        assert mode_of(path) == "RGB"
        # 200*.299 + 100*.587 + 50*.114 = 124.2 -> 124; 255*.114 = 29.07 -> 29; grey stays grey
        assert (load_grayscale(path) * 255).round().tolist() == [[124, 29], [255, 17]]
    rgbx = Image.fromarray(rgb).convert("RGBX")
    assert (pil_to_gray(rgbx) * 255).round().tolist() == [[124, 29], [255, 17]]


def test_ycbcr_is_its_y_channel(tmp_path):
    y = Image.fromarray(U8)
    chroma = Image.fromarray(np.full_like(U8, 200))
    path = saved(tmp_path, Image.merge("YCbCr", (y, chroma, chroma)), "ycc.tif")
    assert mode_of(path) == "YCbCr"
    np.testing.assert_array_equal(load_grayscale(path), U8.astype(np.float32) / np.float32(255))


def test_opaque_alpha_is_dropped(tmp_path):
    alpha = Image.fromarray(np.full_like(U8, 255))
    la = saved(tmp_path, Image.merge("LA", (Image.fromarray(U8), alpha)), "la.png")
    gray = Image.fromarray(U8)
    rgba = saved(tmp_path, Image.merge("RGBA", (gray, gray, gray, alpha)), "rgba.png")
    assert (mode_of(la), mode_of(rgba)) == ("LA", "RGBA")
    expected = U8.astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(load_grayscale(la), expected)
    np.testing.assert_array_equal(load_grayscale(rgba), expected)


def test_palette_images_go_through_their_palette(tmp_path):
    gif = saved(tmp_path, Image.fromarray(U8), "l.gif")  # grey levels stored as a palette
    assert mode_of(gif) == "P"
    np.testing.assert_array_equal(load_grayscale(gif), U8.astype(np.float32) / np.float32(255))
    palette_img = Image.new("P", (2, 1))
    palette_img.putpalette([200, 100, 50, 0, 0, 255])
    palette_img.putdata([1, 0])
    png = saved(tmp_path, palette_img, "p.png")
    assert (load_grayscale(png) * 255).round().tolist() == [[29, 124]]
    unused_transparency = saved(tmp_path, palette_img, "p_t.png", transparency=5)
    assert (load_grayscale(unused_transparency) * 255).round().tolist() == [[29, 124]]


# --- refused modes -------------------------------------------------------------------------------


@pytest.mark.parametrize(("big_endian", "rawmode"), [(False, "I;16S"), (True, "I;16BS")])
def test_signed_16_bit_is_refused_by_name(tmp_path, big_endian, rawmode):
    path = tmp_path / "s16.tif"
    path.write_bytes(tiff_bytes(np.array([[0, 100], [200, 300]], np.int16), sample_format=2, big_endian=big_endian))
    assert mode_of(path) == "I"  # Pillow widens signed 16-bit to 32-bit: the rule looks at the stored samples
    assert f"signed 16-bit samples ({rawmode}) are refused" in refused(path)


@pytest.mark.parametrize(("values", "found"), [([[0, 70000]], "0..70000"), ([[-5, 10]], "-5..10")])
def test_mode_i_outside_0_65535_is_refused_with_the_range(tmp_path, values, found):
    path = tmp_path / "i.tif"
    path.write_bytes(tiff_bytes(np.array(values, np.int32), sample_format=2))
    assert f"32-bit integer image (mode 'I') has values {found}; only 0..65535 is accepted" in refused(path)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([[0.0, 1.5]], "has values 0..1.5; only [0, 1] is accepted (not clipped)"),
        ([[-0.25, 0.5]], "has values -0.25..0.5; only [0, 1] is accepted"),
        ([[np.nan, 0.5], [np.inf, 0.1]], "has 2 NaN/inf value(s); refused"),
    ],
)
def test_float_outside_unit_range_or_not_finite_is_refused(tmp_path, values, message):
    path = saved(tmp_path, Image.fromarray(np.array(values, np.float32)), "f.tif")
    assert f"float image (mode 'F') {message}" in refused(path)


def test_transparent_pixels_are_refused(tmp_path):
    alpha = np.full_like(U8, 255)
    alpha[0, 1] = 0
    alpha[1, 1] = 254
    gray = Image.fromarray(U8)
    la = saved(tmp_path, Image.merge("LA", (gray, Image.fromarray(alpha))), "la.png")
    rgba = saved(tmp_path, Image.merge("RGBA", (gray, gray, gray, Image.fromarray(alpha))), "rgba.png")
    for path in (la, rgba):
        assert "2 of 6 pixels are not opaque (alpha < 255)" in refused(path)
    palette_img = Image.new("P", (2, 1))
    palette_img.putpalette([200, 100, 50, 0, 0, 255])
    palette_img.putdata([1, 0])
    used_transparency = saved(tmp_path, palette_img, "p_t.png", transparency=0)
    assert "1 of 2 pixels are not opaque" in refused(used_transparency)
    grey_palette = [v for i in range(256) for v in (i, i, i)]
    pa_image = Image.merge("PA", (gray, Image.fromarray(alpha)))
    pa_image.putpalette(grey_palette)
    pa = saved(tmp_path, pa_image, "pa.tif")
    assert mode_of(pa) == "PA" and "2 of 6 pixels are not opaque" in refused(pa)
    opaque = Image.merge("PA", (gray, Image.fromarray(np.full_like(U8, 255))))
    opaque.putpalette(grey_palette)
    assert load_grayscale(saved(tmp_path, opaque, "pa_opaque.tif")).tolist() == (U8 / np.float32(255)).tolist()


@pytest.mark.parametrize(
    ("mode", "name", "reason"),
    [("CMYK", "c.tif", "colour profile"), ("CMYK", "c.jpg", "colour profile"), ("LAB", "lab.tif", "colour-space")],
)
def test_colour_spaces_without_a_grey_rule_are_refused(tmp_path, mode, name, reason):
    path = saved(tmp_path, Image.new(mode, (4, 4)), name)
    assert mode_of(path) == mode
    message = refused(path)
    assert f"image mode {mode!r} is refused" in message and reason in message


@pytest.mark.parametrize("mode", ["HSV", "La", "RGBa"])
def test_modes_without_a_file_form_are_refused_by_name(mode):
    with pytest.raises(ImageDecodeError, match=rf"image mode '{mode}' is refused"):
        pil_to_gray(Image.new(mode, (2, 2)))


# --- decompression bombs -------------------------------------------------------------------------


def test_limit_is_pillows_default():
    assert MAX_PIXELS == 89_478_485


def test_header_beyond_pillows_error_threshold_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(100_000, 100_000))
    message = refused(path)
    assert "image is 10,000,000,000 pixels, more than the limit of 89,478,485 pixels" in message
    assert "decompression bomb" in message


def test_header_in_pillows_warning_band_is_refused_with_its_size(tmp_path):
    path = tmp_path / "band.png"
    path.write_bytes(png_header(10_000, 10_000))  # 1e8 pixels: Pillow would only warn and then decode
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert "image is 10000 x 10000 = 100,000,000 pixels, more than the limit of 89,478,485" in refused(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warnings as errors: still the same refusal, not a warning exception
        assert "100,000,000 pixels, more than the limit" in refused(path)


def test_header_just_inside_the_limit_is_not_refused_for_size(tmp_path):
    path = tmp_path / "ok_size.png"
    path.write_bytes(png_header(9_000, 9_000))  # 81e6 pixels, no data: fails later, for its data
    assert "more than the limit" not in refused(path)


def test_bomb_in_a_mimic_tree_is_corrupt_with_the_reason(tmp_path):
    tree = write_mimic_tree(tmp_path)
    victim = scan_mimic(tree.root, progress=False).cases[0]
    victim.image_path.write_bytes(png_header(100_000, 100_000))
    assert check_image(victim.image_path).status == "corrupt"
    scan = scan_mimic(tree.root, progress=False)
    assert victim.case_id in scan.corrupt and victim.case_id not in [c.case_id for c in scan.cases]
    assert scan.reasons[victim.case_id].startswith("image is 10,000,000,000 pixels, more than the limit")


def test_import_and_evaluation_record_a_bomb_as_unreadable(tmp_path):
    tree = write_mimic_tree(tmp_path / "mimic")
    cases = scan_mimic(tree.root, progress=False).cases[:2]
    source = tmp_path / "incoming"
    source.mkdir()
    (source / f"{cases[0].case_id}.png").write_bytes(png_header(100_000, 100_000))
    Image.fromarray(np.full((40, 40), 90, np.uint8)).save(source / f"{cases[1].case_id}.png")
    report = import_folder(
        source, out=tmp_path / "run", name="ext", cases=cases, resolution=32, bits=8, geometry=Geometry("crop"), progress=False
    )
    assert report.imported == 1
    assert len(report.unreadable) == 1 and report.unreadable[0].startswith(f"{cases[0].case_id}.png (")
    assert "10,000,000,000 pixels, more than the limit of 89,478,485" in report.unreadable[0]

    items = [
        ImageItem(cases[0].case_id, 0, source / f"{cases[0].case_id}.png"),
        ImageItem(cases[1].case_id, 0, cases[1].image_path),
    ]
    dataset = RealImages(items, Preprocessing(32, 8, Geometry("crop")))
    bomb, good = dataset[0], dataset[1]
    assert "more than the limit of 89,478,485 pixels" in bomb["error"] and good["error"] == ""
    assert int(good["pixels"].max()) > 0
