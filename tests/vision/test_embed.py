"""The batched SFace embedder equals one image per invoke, bit for bit (shipped int8 model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kycedge.core.errors import ModelError
from kycedge.protocol.match import l2_normalize
from kycedge.vision.embed import MAX_BATCH, Embedder
from kycedge.vision.models import load_manifest
from kycedge.vision.runtime import Model
from kycedge.vision.template import fuse, fusion_weights
from PIL import Image


def _sface(models_dir: Path) -> Model:
    manifest = load_manifest(models_dir)
    entry = manifest.role("embedder")
    assert entry is not None
    return Model(manifest.read_checked(entry), threads=1, name=entry.name)


@pytest.fixture(scope="module")
def crops(pipe, faces_dir: Path) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    """The shipped path's aligned crops of the fixture portraits (plus a dark and a noisy one)."""
    out = []
    for p in sorted(faces_dir.glob("*.*g")):
        with Image.open(p) as im:
            rgb = np.ascontiguousarray(np.asarray(im.convert("RGB")))
        g = pipe.guide(rgb)
        if g.ok:
            c = pipe.candidate(rgb, g)
            assert c is not None
            out.append(c.crop)
    assert len(out) >= 3
    rng = np.random.default_rng(15)
    out.append((out[0] // 6).astype(np.uint8))
    out.append(rng.integers(0, 256, size=(112, 112, 3), dtype=np.uint8))
    return out


@pytest.fixture(scope="module")
def one_per_invoke(models_dir: Path, crops: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Raw outputs of a separate batch-1 interpreter through the generic float path of Model.run."""
    model = _sface(models_dir)
    assert model.batch == 1

    def raw(c: np.ndarray) -> np.ndarray:
        return model.run(c.astype(np.float32)[None])[0].reshape(-1)

    return {"plain": [raw(c) for c in crops],
            "mirror": [raw(np.ascontiguousarray(c[:, ::-1])) for c in crops]}


@pytest.mark.parametrize("max_batch", [1, MAX_BATCH, 3, 6])
def test_batched_embeddings_equal_one_image_per_invoke(models_dir: Path, crops: list[np.ndarray],
                                                       one_per_invoke: dict[str, list[np.ndarray]],
                                                       max_batch: int) -> None:
    flip = Embedder(_sface(models_dir), flip_average=True, max_batch=max_batch)
    plain = Embedder(_sface(models_dir), flip_average=False, max_batch=max_batch)
    want_plain = [l2_normalize(r) for r in one_per_invoke["plain"]]
    want_flip = [l2_normalize(l2_normalize(a) + l2_normalize(b))
                 for a, b in zip(one_per_invoke["plain"], one_per_invoke["mirror"], strict=True)]
    for k in (1, 2, 3, len(crops)):  # partial last batches included
        got_flip = flip.embed_many(crops[:k])
        got_plain = plain.embed_many(crops[:k])
        assert len(got_flip) == len(got_plain) == k
        for i in range(k):
            assert got_flip[i].dtype == np.float32
            assert np.array_equal(got_flip[i], want_flip[i]), (k, i)  # bit-identical, not just close
            assert np.array_equal(got_plain[i], want_plain[i]), (k, i)
    # single-crop calls, in any order after batched ones (the interpreter is re-planned as needed)
    for i in (2, 0):
        assert np.array_equal(flip.embed(crops[i]), want_flip[i])
        assert np.array_equal(flip.embed_plain(crops[i]), want_plain[i])
        assert np.array_equal(plain.embed(crops[i]), want_plain[i])
    assert flip.embed_many([]) == []


def test_pipeline_template_is_the_fusion_of_per_crop_embeddings(  # type: ignore[no-untyped-def]
        pipe, crops: list[np.ndarray], one_per_invoke: dict[str, list[np.ndarray]]) -> None:
    from kycedge.vision.template import Candidate

    assert pipe.embedder.flip_average  # the shipped setting
    cands = [Candidate(crop=c, score=1.0, quality={}) for c in crops[:3]]
    per_crop = [l2_normalize(l2_normalize(a) + l2_normalize(b))
                for a, b in zip(one_per_invoke["plain"][:3], one_per_invoke["mirror"][:3], strict=True)]
    want = fuse(per_crop, fusion_weights([1.0] * 3, weighted=pipe.fusion_weighted))
    assert np.array_equal(pipe.template(cands), want)


def test_bad_crops_are_refused(models_dir: Path, crops: list[np.ndarray]) -> None:
    emb = Embedder(_sface(models_dir), flip_average=True)
    for bad in (np.zeros((112, 111, 3), np.uint8), np.zeros((112, 112), np.uint8),
                np.zeros((112, 112, 3), np.float32)):
        with pytest.raises(ValueError, match="aligned"):
            emb.embed_many([crops[0], bad])
        with pytest.raises(ValueError, match="aligned"):
            emb.embed_plain(bad)
    with pytest.raises(ValueError, match="max_batch"):
        Embedder(_sface(models_dir), max_batch=0)


def test_set_batch_replans_and_refuses_nonsense(models_dir: Path) -> None:
    model = _sface(models_dir)
    assert model.batch == 1
    model.set_batch(2)
    assert model.batch == 2
    assert model.inputs[0].shape == (2, 112, 112, 3)
    assert model.outputs[0].shape[0] == 2
    assert model.inputs[0].scale == 1.0  # quantisation kept
    assert model.inputs[0].zero_point == -128
    zeros = np.zeros((2, 112, 112, 3), np.float32)
    out = model.run(zeros)[0]
    assert out.shape[0] == 2
    assert np.array_equal(out[0], out[1])
    with pytest.raises(ModelError, match="shape"):
        model.run(zeros[:1])
    model.set_batch(2)  # no-op
    assert model.batch == 2
    with pytest.raises(ModelError, match="at least 1"):
        model.set_batch(0)
