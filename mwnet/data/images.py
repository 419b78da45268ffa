"""Decoding one image file, for the streamed loaders (stream_loader.py) and the suspects' contact sheet: the one
place that opens an image and says why one cannot be read."""

from PIL import Image

# Pillow's errors for a missing, truncated or foreign file, or one that decodes to a decompression bomb
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class UnreadableImage(Exception):
    """An image that cannot be decoded: `kind`, the error's type, and `reason`, its first line (or the type)."""

    def __init__(self, path, error):
        self.path, self.kind = path, type(error).__name__
        self.reason = str(error).splitlines()[0][:80] if str(error) else self.kind
        super().__init__(f"{path} ({self.reason})")


def read_rgb(path):
    """The image at path, decoded, as a PIL image in RGB; UnreadableImage where it cannot be."""
    try:
        with Image.open(path) as f:
            return f.convert("RGB")
    except DECODE_ERRORS as e:
        raise UnreadableImage(path, e) from None
