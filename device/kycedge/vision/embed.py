"""SFace embedding of an aligned 112x112 RGB crop.

Preprocessing as OpenCV's ``FaceRecognizerSF::feature``: RGB, values 0..255, no mean or
scale (``blobFromImage(img, 1, (112, 112), 0, swapRB=true)``). The layout (NHWC or NCHW)
and the input quantisation are read from the model. Optionally the horizontally flipped
crop is embedded too and the two vectors are summed before normalisation.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from kycedge.protocol.match import l2_normalize
from kycedge.vision.align import SFACE_SIZE
from kycedge.vision.runtime import Model, pixel_lut

__all__ = ["Embedder"]


class Embedder:
    def __init__(self, model: Model, *, flip_average: bool = False) -> None:
        self.model = model
        shape = model.inputs[0].shape
        if len(shape) != 4 or shape[0] != 1:
            raise ValueError(f"SFace: expected a 4-D single-image input, got {shape}")
        if shape[3] == 3:
            self.nchw, self.size = False, (shape[1], shape[2])
        elif shape[1] == 3:
            self.nchw, self.size = True, (shape[2], shape[3])
        else:
            raise ValueError(f"SFace: expected 3 colour channels (NHWC or NCHW), got {shape}")
        if self.size != (SFACE_SIZE, SFACE_SIZE):
            raise ValueError(f"SFace: expected a {SFACE_SIZE}x{SFACE_SIZE} input, got {shape}")
        self.flip_average = flip_average
        self.dim = int(np.prod(model.outputs[0].shape))
        self._lut = pixel_lut(model.inputs[0])

    def _raw(self, crop: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        if not self.nchw:
            lut = self._lut

            def fill(buf: npt.NDArray[np.generic]) -> None:
                # pixel values 0..255 in the input tensor's own type, via a 256-entry table
                # (bit-identical to quantising the float crop)
                np.take(lut, crop, out=buf[0])

            return self.model.run_filled(fill)[0].reshape(-1)
        x = crop.astype(np.float32)[None]
        if self.nchw:
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return self.model.run(x)[0].reshape(-1)

    def embed(self, crop: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """L2-normalised float32 embedding of an aligned RGB crop (flip-averaged when enabled)."""
        v = self.embed_plain(crop)
        if self.flip_average:
            v = l2_normalize(v + self.embed_plain(np.ascontiguousarray(crop[:, ::-1])))
        return v

    def embed_plain(self, crop: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """L2-normalised embedding of the crop alone (no mirror image)."""
        if crop.shape[:2] != self.size or crop.ndim != 3 or crop.shape[2] != 3:
            raise ValueError(f"SFace: expected an aligned {self.size} RGB crop, got {crop.shape}")
        return l2_normalize(self._raw(crop))
