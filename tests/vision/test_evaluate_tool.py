"""tools/evaluate.py: the protocol arithmetic (threshold at FAR, k-fold, all-pairs, pairs file)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from support.tools import load_tool

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ev():  # type: ignore[no-untyped-def]
    return load_tool("evaluate.py")


def test_threshold_at_far(ev) -> None:  # type: ignore[no-untyped-def]
    imp = np.arange(10000, dtype=np.float32) / 10000  # 0.0000 .. 0.9999
    t = ev.threshold_at_far(imp, 1e-3)
    assert (imp >= t).sum() == 10  # exactly FAR x N accepted
    t4 = ev.threshold_at_far(imp, 1e-4)
    assert (imp >= t4).sum() == 1
    t0 = ev.threshold_at_far(imp, 1e-5)
    assert (imp >= t0).sum() == 0
    tar, _ = ev.tar_at(np.array([0.5, 0.99985, 1.0]), imp, 1e-4)  # t is just above 0.9998
    assert tar == pytest.approx(2 / 3)


def test_best_threshold_and_kfold(ev) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    same = np.array([True] * 300 + [False] * 300)
    scores = np.where(same, rng.normal(0.7, 0.1, 600), rng.normal(0.1, 0.1, 600))
    t = ev.best_threshold(scores, same)
    assert 0.3 < t < 0.5
    folds = np.repeat(np.arange(5), 120)
    acc = ev.kfold_accuracy(scores, same, np.tile(folds.reshape(5, 120), 1).reshape(-1), 5)
    assert acc["mean"] > 0.99
    assert len(acc["per_fold"]) == 5


def test_all_pair_scores(ev) -> None:  # type: ignore[no-untyped-def]
    emb = np.eye(4, dtype=np.float32)
    emb[1] = emb[0]
    ident = np.array(["a", "a", "b", "c"])
    imp, gen = ev.all_pair_scores(emb, ident, block=3)
    assert gen.tolist() == [1.0]
    assert sorted(imp.tolist()) == [0.0] * 5


def test_parse_pairs(ev, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "pairs.txt"
    p.write_text("2\t1\nA\t1\t2\nA\t1\tB\t1\nC\t1\t3\nC\t2\tD\t4\n")
    folds, pairs = ev.parse_pairs(p)
    assert folds == 2
    assert pairs[0] == ("A", 1, "A", 2, True, 0)
    assert pairs[3] == ("C", 2, "D", 4, False, 1)
    p.write_text("2\t1\nA\t1\t2\n")
    with pytest.raises(SystemExit):
        ev.parse_pairs(p)


def test_limit_keeps_n_pairs_over_every_fold_and_both_kinds(ev) -> None:  # type: ignore[no-untyped-def]
    pairs = [(f"a{k}", 1, f"b{k}", 1, (k // 300) % 2 == 0, k // 600) for k in range(6000)]
    kept = ev.limit_pairs(pairs, 200)
    assert len(kept) == 200
    assert {q[5] for q in kept} == set(range(10))  # every fold
    assert {q[4] for q in kept} == {True, False}
    assert ev.limit_pairs(pairs, 0) == pairs


def test_far_caveat_for_too_few_impostor_pairs(ev) -> None:  # type: ignore[no-untyped-def]
    c = ev.far_caveat(110, 1e-4, "listed pairs")
    assert c is not None
    assert "110 impostor pairs" in c
    assert "100000" in c
    assert ev.far_caveat(6_824_247, 1e-4, "all cross-identity pairs") is None
    assert ev.far_caveat(10_000, 1e-3, "x") is None



def test_listed_genuine_scores_only_same_pairs_and_refusals_score_minus_one(ev, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    root = tmp_path
    a1, a2, b1 = ev.image_path(root, "A", 1), ev.image_path(root, "A", 2), ev.image_path(root, "B", 1)
    results = {a1: SimpleNamespace(ok=True, template=np.array([1.0, 0.0])),
               a2: SimpleNamespace(ok=True, template=np.array([0.6, 0.8])),
               b1: SimpleNamespace(ok=False, template=None)}
    pairs = [("A", 1, "A", 2, True, 0), ("A", 1, "B", 1, False, 0), ("B", 1, "B", 1, True, 0)]
    assert ev.listed_genuine_scores(results, root, pairs) == {"A 1 2": pytest.approx(0.6), "B 1 1": -1.0}


def test_false_reject_split_separates_score_moves_from_threshold_moves(ev) -> None:  # type: ignore[no-untyped-def]
    ref = {"p": 0.30, "q": 0.428, "r": 0.50, "s": 0.4275}
    mine = {"p": 0.31, "q": 0.425, "r": 0.49, "s": 0.4279}
    split = ev.false_reject_split(mine, 0.4278, ref, 0.4268)
    assert (split["false_rejects"], split["reference_false_rejects"], split["both"]) == (2, 1, 1)
    assert split["only_this_model"] == ["q"]  # its genuine score fell below both thresholds
    assert split["only_reference"] == []
    # at the reference's threshold this model rejects p and q; the reference at this
    # model's (higher) threshold rejects p and s: both effects are visible separately
    assert split["this_model_at_reference_threshold"] == 2
    assert split["reference_at_this_threshold"] == 2
    same = ev.false_reject_split(ref, 0.4268, ref, 0.4268)
    assert same["only_this_model"] == same["only_reference"] == []
    assert same["false_rejects"] == same["reference_false_rejects"] == same["both"] == 1


def test_peer_tools_without_opencv_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    monkeypatch.setitem(sys.modules, "cv2", None)
    import bench_peers

    with pytest.raises(SystemExit, match=r"pip install -e '\.\[bench\]'"):
        bench_peers.require_cv2()
    with pytest.raises(SystemExit, match=r"\.\[bench\]"):
        bench_peers.OpenCVStack(Path("y.onnx"), Path("s.onnx"), 1)
