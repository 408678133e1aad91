"""SFace embedding of aligned 112x112 RGB crops.

Preprocessing as OpenCV's ``FaceRecognizerSF::feature``: RGB, values 0..255, no mean or
scale (``blobFromImage(img, 1, (112, 112), 0, swapRB=true)``). The layout (NHWC or NCHW)
and the input quantisation are read from the model. Optionally the horizontally flipped
crop is embedded too and the two vectors are summed before normalisation.

Several images go through the model in one invoke (a batch): a crop and its mirror image
together, the K crops of a template two images at a time. The outputs are the same, bit
for bit, as one image per invoke (``tests/vision/test_embed.py``); batch 2 is measured
faster per image than batch 1, and larger batches slower again on this CPU (ADR 0012,
"Speed"), hence :data:`MAX_BATCH`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from kycedge.protocol.match import l2_normalize
from kycedge.vision.align import SFACE_SIZE
from kycedge.vision.runtime import Model, pixel_lut

__all__ = ["MAX_BATCH", "Embedder"]

#: images per SFace invoke at most (a crop and its mirror; measured, see the module docstring)
MAX_BATCH = 2

Crop = npt.NDArray[np.uint8]


class Embedder:
    def __init__(self, model: Model, *, flip_average: bool = False, max_batch: int = MAX_BATCH) -> None:
        self.model = model
        shape = model.inputs[0].shape
        if len(shape) != 4:
            raise ValueError(f"SFace: expected a 4-D image input, got {shape}")
        if shape[3] == 3:
            self.nchw, self.size = False, (shape[1], shape[2])
        elif shape[1] == 3:
            self.nchw, self.size = True, (shape[2], shape[3])
        else:
            raise ValueError(f"SFace: expected 3 colour channels (NHWC or NCHW), got {shape}")
        if self.size != (SFACE_SIZE, SFACE_SIZE):
            raise ValueError(f"SFace: expected a {SFACE_SIZE}x{SFACE_SIZE} input, got {shape}")
        if max_batch < 1:
            raise ValueError(f"SFace: expected max_batch >= 1, got {max_batch}")
        self.flip_average = flip_average
        self.max_batch = max_batch
        self.dim = int(np.prod(model.outputs[0].shape[1:]))
        self._lut = pixel_lut(model.inputs[0])

    def _check(self, crop: Crop) -> None:
        if crop.ndim != 3 or crop.shape[:2] != self.size or crop.shape[2] != 3 or crop.dtype != np.uint8:
            raise ValueError(f"SFace: expected an aligned {self.size} uint8 RGB crop, got {crop.shape} "
                             f"{crop.dtype}")

    def _invoke(self, images: Sequence[tuple[Crop, bool]]) -> npt.NDArray[np.float32]:
        """Raw outputs, one row per (crop, mirrored) image, in one invoke of len(images)."""
        self.model.set_batch(len(images))
        if not self.nchw:
            lut = self._lut

            def fill(buf: npt.NDArray[np.generic]) -> None:
                # pixel values 0..255 in the input tensor's own type, via a 256-entry table
                # (bit-identical to quantising the float crop); a mirror is read reversed,
                # never copied
                for i, (crop, mirrored) in enumerate(images):
                    np.take(lut, crop[:, ::-1] if mirrored else crop, out=buf[i])

            out = self.model.run_filled(fill)[0]
        else:
            x = np.stack([c[:, ::-1] if m else c for c, m in images]).astype(np.float32)
            out = self.model.run(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))[0]
        if out.shape[0] != len(images):
            raise ValueError(f"SFace: expected {len(images)} output rows, got shape {out.shape}")
        return out.reshape(len(images), -1)

    def _raw(self, images: Sequence[tuple[Crop, bool]]) -> npt.NDArray[np.float32]:
        rows = [self._invoke(images[i:i + self.max_batch]) for i in range(0, len(images), self.max_batch)]
        return rows[0] if len(rows) == 1 else np.concatenate(rows)

    def embed_many(self, crops: Sequence[Crop]) -> list[npt.NDArray[np.float32]]:
        """One L2-normalised embedding per aligned RGB crop (flip-averaged when enabled).

        The crops (and their mirror images) go through the model :attr:`max_batch` images
        per invoke; the result equals :meth:`embed` of each crop.
        """
        for c in crops:
            self._check(c)
        if not crops:
            return []
        if not self.flip_average:
            return [l2_normalize(r) for r in self._raw([(c, False) for c in crops])]
        raw = self._raw([(c, m) for c in crops for m in (False, True)])
        return [l2_normalize(l2_normalize(raw[2 * i]) + l2_normalize(raw[2 * i + 1]))
                for i in range(len(crops))]

    def embed(self, crop: Crop) -> npt.NDArray[np.float32]:
        """L2-normalised float32 embedding of an aligned RGB crop (flip-averaged when enabled)."""
        return self.embed_many([crop])[0]

    def embed_plain(self, crop: Crop) -> npt.NDArray[np.float32]:
        """L2-normalised embedding of the crop alone (no mirror image)."""
        self._check(crop)
        return l2_normalize(self._raw([(crop, False)])[0])
