"""SecureBoost is lossless: federated trees and predictions equal the pooled booster's."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cityos.federation import secureboost as sb
from cityos.testing.federation import LocalFederation


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xg = rng.normal(size=(n, 3))
    xh = rng.normal(size=(n, 4))
    xh[:, 3] = np.round(xh[:, 3])  # few distinct values: empty bins and ties
    xg[rng.random(n) < 0.05, 1] = np.nan  # missing values
    y = (
        3 * xg[:, 0]
        + 2 * np.sin(xh[:, 1] * 2)
        + (xh[:, 2] > 0.5) * 4
        + rng.normal(scale=0.3, size=n)
    )
    return xg, xh, y, np.hstack([xg, xh])


def _federated(
    xg: Any, xh: Any, y: Any, p: sb.BoostParams, hook: Any = None
) -> tuple[sb.GuestModel, sb.HostModel, np.ndarray]:
    fed = LocalFederation(["env", "weather"], on_message=hook)
    models = fed.run(
        {
            "env": lambda ch: sb.train_guest(ch, xg, y, p),
            "weather": lambda ch: sb.train_host(ch, xh, "env"),
        }
    )
    g, h = models["env"], models["weather"]
    fed2 = LocalFederation(["env", "weather"])
    pred = fed2.run(
        {
            "env": lambda ch: sb.predict_guest(ch, g, xg),
            "weather": lambda ch: sb.predict_host(ch, h, xh),
        }
    )["env"]
    return g, h, pred


@pytest.mark.parametrize("objective", ["squared", "logistic"])
def test_trees_and_predictions_identical_to_pooled_boosting(objective: str) -> None:
    xg, xh, y, pooled_x = _data(600)
    if objective == "logistic":
        y = (y > np.median(y)).astype(float)
    p = sb.BoostParams(
        n_trees=3, max_depth=3, min_child_samples=10, key_bits=1024, objective=objective
    )
    g, h, pred = _federated(xg, xh, y, p)
    ref = sb.train_pooled(pooled_x, y, p)
    joint = sb.joint_trees(g, {"weather": h})
    assert len(joint) == 3
    for a, b in zip(joint, ref.trees, strict=True):
        assert a.splits == b.splits
        assert a.leaves == b.leaves  # exact float equality
    owners = {party for t in g.trees for party, _ in t.splits.values()}
    assert owners == {"env", "weather"}  # both parties own splits
    assert np.array_equal(pred, sb.predict_pooled(ref, pooled_x))
    # held-out rows route identically too
    xg2, xh2, _, pooled2 = _data(200, seed=1)
    fed = LocalFederation(["env", "weather"])
    p2 = fed.run(
        {
            "env": lambda ch: sb.predict_guest(ch, g, xg2),
            "weather": lambda ch: sb.predict_host(ch, h, xh2),
        }
    )["env"]
    assert np.array_equal(p2, sb.predict_pooled(ref, pooled2))


def test_the_booster_learns() -> None:
    _xg, _xh, y, pooled_x = _data(600)
    p = sb.BoostParams(n_trees=8, max_depth=3, min_child_samples=10)
    ref = sb.train_pooled(pooled_x, y, p)
    rmse = float(np.sqrt(np.mean((sb.predict_pooled(ref, pooled_x) - y) ** 2)))
    assert rmse < 0.5 * float(np.std(y))


def test_host_sees_only_ciphertexts_and_guest_sees_no_host_feature() -> None:
    xg, xh, y, _ = _data(300)
    p = sb.BoostParams(n_trees=2, max_depth=2, min_child_samples=10, key_bits=1024)
    wire: list[tuple[str, str, str, bytes]] = []
    _g, h, _ = _federated(xg, xh, y, p, hook=lambda f, t, tag, raw: wire.append((f, t, tag, raw)))
    to_host = b"".join(raw for f, t, _, raw in wire if t == "weather")
    to_guest = b"".join(raw for f, t, _, raw in wire if t == "env")
    # labels and gradients never cross in plaintext (as float64 or fixed-point int64)
    for v in y[:50]:
        assert np.float64(v).tobytes() not in to_host
    pred0 = np.full(y.size, y.mean())
    gq, _ = sb._gradients(pred0, y, p)
    for v in gq[:50]:
        assert int(v).to_bytes(8, "little", signed=True) not in to_host
        assert np.float64(pred0[0] - y[0]).tobytes() not in to_host
    # host feature values and bin thresholds never reach the guest
    for v in xh[:50].ravel():
        assert np.float64(v).tobytes() not in to_guest
    for e in h.binner.edges:
        for v in e:
            assert np.float64(v).tobytes() not in to_guest
    tags = {tag for _, _, tag, _ in wire}
    assert tags <= {"sb/setup", "sb/ready", "sb/ctl", "sb/candidates", "sb/decide", "sb/partition"}


def test_misaligned_rows_are_a_clear_error() -> None:
    xg, xh, y, _ = _data(100)
    fed = LocalFederation(["env", "weather"])
    p = sb.BoostParams(n_trees=1, key_bits=1024)
    with pytest.raises(sb.SecureBoostError, match="align them with psi"):
        fed.run(
            {
                "env": lambda ch: sb.train_guest(ch, xg, y, p),
                "weather": lambda ch: sb.train_host(ch, xh[:90], "env"),
            }
        )


def test_bad_labels_are_refused() -> None:
    xg, _, y, _ = _data(50)
    with pytest.raises(sb.SecureBoostError, match="0/1 labels"):
        sb.train_pooled(xg, y, sb.BoostParams(objective="logistic"))
    with pytest.raises(sb.SecureBoostError, match="fixed-point range"):
        sb.train_pooled(xg, y * 1e9, sb.BoostParams())


@pytest.mark.slow
def test_worker_processes_give_the_same_model() -> None:
    xg, xh, y, pooled_x = _data(1200)
    p = sb.BoostParams(
        n_trees=2, max_depth=3, min_child_samples=10, key_bits=1024, max_bins=8, workers=2
    )
    g, h, pred = _federated(xg, xh, y, p)
    ref = sb.train_pooled(pooled_x, y, p)
    assert [t.splits for t in sb.joint_trees(g, {"weather": h})] == [t.splits for t in ref.trees]
    assert np.array_equal(pred, sb.predict_pooled(ref, pooled_x))


def test_two_hosts_are_lossless_too() -> None:
    xg, xh, y, pooled_x = _data(500)
    xa, xb = xh[:, :2], xh[:, 2:]
    p = sb.BoostParams(n_trees=2, max_depth=3, min_child_samples=10, key_bits=1024)
    fed = LocalFederation(["env", "weather", "traffic"])
    m = fed.run(
        {
            "env": lambda ch: sb.train_guest(ch, xg, y, p, hosts=["weather", "traffic"]),
            "weather": lambda ch: sb.train_host(ch, xa, "env"),
            "traffic": lambda ch: sb.train_host(ch, xb, "env"),
        }
    )
    ref = sb.train_pooled(pooled_x, y, p)
    joint = sb.joint_trees(m["env"], {"weather": m["weather"], "traffic": m["traffic"]})
    assert [t.splits for t in joint] == [t.splits for t in ref.trees]
    assert [t.leaves for t in joint] == [t.leaves for t in ref.trees]
    owners = {party for t in m["env"].trees for party, _ in t.splits.values()}
    assert {"weather", "traffic"} <= owners
    pred = LocalFederation(["env", "weather", "traffic"]).run(
        {
            "env": lambda ch: sb.predict_guest(ch, m["env"], xg),
            "weather": lambda ch: sb.predict_host(ch, m["weather"], xa),
            "traffic": lambda ch: sb.predict_host(ch, m["traffic"], xb),
        }
    )["env"]
    assert np.array_equal(pred, sb.predict_pooled(ref, pooled_x))


@pytest.mark.parametrize("sign", [-1, 1, 0])
def test_packed_candidate_sums_are_exact_at_the_fixed_point_extremes(sign: int) -> None:
    """Rows at ±(2^grad_bits - 1) (or alternating), every left count from 1 to T - 1, packed
    as many to a ciphertext as fit: no slot borrows from or carries into its neighbours."""
    from cityos.federation import _work
    from cityos.federation.paillier import generate_keypair

    p = sb.BoostParams(objective="squared", key_bits=1024)
    n = 37  # rows of the whole training set; this node holds all of them
    lay, offset = sb._layout(n, p)
    pk, sk = generate_keypair(p.key_bits)
    per_ct = (pk.bits - 1) // lay.bits
    top = (1 << p.grad_bits) - 1
    g = np.array([sign * top if sign else (top if i % 2 else -top) for i in range(n)])
    h = np.full(n, top)
    nsq, width = int(pk.nsq), (int(pk.nsq).bit_length() + 7) // 8
    rows = sk.encrypt_many(
        [lay.pack((int(a) + offset, int(b))) for a, b in zip(g, h, strict=True)], 4
    )
    cands = []
    acc = pk.encrypt(0)
    for c in range(1, n):  # left sums over the first c rows, rebased from c to n rows
        acc = pk.add(acc, rows[c - 1])
        cands.append(sb._rebase(acc, ((n - c) * offset) << lay.widths[1], int(pk.n), nsq))
    packed = _work.pack(nsq, _work.to_blob(cands, width), per_ct, lay.bits)
    plains = [sk.decrypt(c) for c in _work.from_blob(packed, width)]
    assert len(plains) == -(-len(cands) // per_ct) and per_ct > 1
    gl, hl = sb._unpack_candidates(plains, len(cands), per_ct, lay, offset, n)
    assert gl.tolist() == np.cumsum(g)[:-1].tolist()
    assert hl.tolist() == np.cumsum(h)[:-1].tolist()
