"""q8: attention rows in 8 bits (attnviz.store.quant), and the run that stores them."""

import numpy as np
import pytest

from attnviz.errors import RunFormatError
from attnviz.store import quant
from attnviz.store.files import sha256_file
from attnviz.store.run import Run

from conftest import many_heads_run, verify_all, writer


def softmax_rows(rng, shape, temperature):
    logits = rng.normal(size=shape) * temperature
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def test_a_row_by_hand():
    # 0.4 is 0.39990234375 in float16, below the maximum: the scale is the next float16 up,
    # 1639 / 4096. Running sums 0.4, 0.7, 1.0 times 254 / scale are 253.9, 444.3, 634.8,
    # rounded 254, 444, 635: codes 254, 190, 191 (per-weight rounding would give 190, 190).
    stored = quant.encode(np.array([0.4, 0.3, 0.3]))
    assert stored.dtype == np.uint8 and stored.shape == (5,)
    assert list(stored[:3]) == [254, 190, 191]
    assert stored[3:].view("<f2")[0] == np.float16(1639 / 4096)
    np.testing.assert_allclose(quant.decode(stored), np.array([254, 190, 191]) * (1639 / 4096)
                               / 254, rtol=1e-6)


@pytest.mark.parametrize("keys, temperature", [(16, 0.1), (128, 1.0), (512, 4.0), (512, 30.0)])
def test_every_stated_bound_holds(keys, temperature):
    rng = np.random.default_rng(keys)
    weights = softmax_rows(rng, (200, keys), temperature)
    stored = quant.encode(weights)
    assert stored.shape == (200, keys + 2)
    decoded = quant.decode(stored).astype(np.float64)
    scale = stored[:, -2:].copy().view("<f2")[:, 0].astype(np.float64)
    peak = weights.max(axis=1)
    assert np.all(scale >= peak) and np.all(scale <= peak * 1.001)
    step = scale / 254
    assert np.all(np.abs(decoded - weights).max(axis=1) <= step + 1e-7)  # one weight
    spans = rng.integers(0, keys, size=(200, 2))
    for row, (a, b) in enumerate(np.sort(spans, axis=1)):  # any span of keys a..b
        assert abs(decoded[row, a:b + 1].sum() - weights[row, a:b + 1].sum()) <= step[row] + 1e-7
    assert np.all(np.abs(decoded.sum(axis=1) - 1) <= step / 2 + 1e-7)  # the whole row


def test_a_long_tail_keeps_its_mass():
    # one key holds 0.9 and 511 keys share 0.1: each tail weight is under half a code, so
    # rounding each weight would store none of the tail's mass
    weights = np.full(512, 0.1 / 511)
    weights[7] = 0.9
    decoded = quant.decode(quant.encode(weights))
    tail = np.arange(512) != 7
    assert np.round(weights[tail] * 254 / 0.9).max() == 0
    assert abs(decoded[tail].sum() - 0.1) <= 0.9 / 254


def test_zeros_and_empty_rows_round_trip():
    assert np.all(quant.decode(quant.encode(np.zeros((2, 3, 4)))) == 0)
    assert quant.encode(np.zeros((0, 5))).shape == (0, 7)
    with pytest.raises(ValueError, match="non-negative"):
        quant.encode(np.array([0.5, -0.1]))


def test_a_q8_run_reads_back_within_the_bound_and_is_a_quarter_of_float32(tmp_path):
    full = many_heads_run(tmp_path / "f16", layers=2, heads=3, keys=40)
    small = many_heads_run(tmp_path / "q8", layers=2, heads=3, keys=40, dtype="q8")
    verify_all(small)
    for name in full.layer_names:
        a, b = full.attention(1, name), small.attention(1, name)
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
        assert np.abs(a - b).max() <= a.max(axis=-1).max() / 254 + 1e-3  # float16's own error
    f16 = (full.root / "attention/00/epoch_0001.npy").stat().st_size
    q8 = (small.root / "attention/00/epoch_0001.npy").stat().st_size
    assert q8 < 0.55 * f16


def test_a_q8_file_of_another_dtype_is_a_format_error(tmp_path):
    run = many_heads_run(tmp_path / "q8", layers=1, heads=2, keys=8, dtype="q8")
    path = run.root / "attention/00/epoch_0001.npy"
    codes = np.load(path)
    np.save(path, codes.astype(np.uint16))
    amended = writer(run.root)  # listed with its new checksum: only its dtype is wrong
    amended.state["files"]["attention/00/epoch_0001.npy"] = sha256_file(path)
    amended.commit()
    with pytest.raises(RunFormatError, match="uint16 but the run stores q8"):
        Run.open(run.root).attention(1)
