import io

import numpy as np
import pytest
from PIL import Image

from introspect.encoding import png_bytes


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (5, 7, 3), (5, 7, 4), (1, 9, 3), (64, 33, 3)])
def test_png_bytes_decode_to_the_same_pixels_with_the_resolution_and_text(shape):
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    picture = Image.open(io.BytesIO(png_bytes(pixels, dpi=200, text={"Software": "introspect"})))
    picture.load()
    assert picture.mode == {2: "L", 3: "RGB", 4: "RGBA"}[len(shape) if len(shape) == 2 else shape[2]]
    assert np.array_equal(np.asarray(picture), pixels)
    assert picture.info["dpi"] == pytest.approx((200, 200), abs=1e-3) and picture.info["Software"] == "introspect"


def test_png_bytes_of_a_strided_view_are_those_of_its_copy():
    """A view that is not contiguous (RGB of an RGBA buffer, every other row, columns reversed; writable or not) is read
    as the pixels it shows."""
    rgba = np.random.default_rng(1).integers(0, 256, (20, 11, 4), dtype=np.uint8)
    frozen = rgba.copy()
    frozen.setflags(write=False)
    for view in (rgba[..., :3], rgba[::2, :, :3], rgba[:, ::-1], frozen[..., :3], frozen[:, ::-1], frozen[:, :, 0]):
        encoded = png_bytes(view)
        assert encoded == png_bytes(np.ascontiguousarray(view))
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(encoded))), view)


@pytest.mark.parametrize("pixels", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros(4, np.uint8),
                                    np.zeros((0, 4, 3), np.uint8), np.zeros((4, 0), np.uint8)])
def test_png_bytes_refuse_what_they_cannot_store(pixels):
    with pytest.raises(ValueError, match="png_bytes takes uint8"):
        png_bytes(pixels)


@pytest.mark.parametrize("key", ["", "x" * 80, "nul\0", "tab\t"])
def test_png_bytes_refuse_a_text_keyword_png_does_not_allow(key):
    with pytest.raises(ValueError, match="PNG text keyword"):
        png_bytes(np.zeros((2, 2), np.uint8), text={key: "value"})


def test_png_bytes_refuse_a_text_png_cannot_hold():
    with pytest.raises(ValueError, match="PNG text is Latin-1"):
        png_bytes(np.zeros((2, 2), np.uint8), text={"Title": "layer → relu"})
