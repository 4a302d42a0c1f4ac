"""What crosses between parties: every message of a PSI + SecureBoost + prediction job,
captured as bytes, holds no plaintext id outside the intersection, feature value, label or
gradient of another party."""

from __future__ import annotations

from typing import Any

import numpy as np

from cityos.federation import psi
from cityos.federation import secureboost as sb
from cityos.testing.federation import LocalFederation


def _encodings(values: np.ndarray) -> set[bytes]:
    """Every plain encoding a value could travel as: float64, float32, fixed-point int64."""
    out: set[bytes] = set()
    for v in np.asarray(values, dtype=np.float64).ravel():
        if v == 0 or not np.isfinite(v):
            continue  # zero and NaN bytes occur everywhere by chance
        out.add(np.float64(v).tobytes())
        out.add(np.float32(v).tobytes())
        q = int(np.rint(v * 2**16))
        if abs(q) > 2**20:  # small ints occur by chance too
            out.add(q.to_bytes(8, "little", signed=True))
    return out


def test_a_whole_vertical_job_leaks_nothing_in_the_clear() -> None:
    rng = np.random.default_rng(11)
    n_g, n_h = 260, 240
    guest_ids = [f"resident-{i:05d}" for i in range(0, 2 * n_g, 2)]
    host_ids = [f"resident-{i:05d}" for i in range(0, 3 * n_h, 3)]
    shared = sorted(set(guest_ids) & set(host_ids))
    rows = {i: k for k, i in enumerate(shared)}
    n = len(shared)
    xg = rng.normal(size=(n, 3)) * 7.3 + 1.1
    xh = rng.normal(size=(n, 3)) * 3.1 - 0.7
    y = xg[:, 0] + 2 * xh[:, 1] + rng.normal(size=n)
    wire: list[tuple[str, str, str, bytes]] = []
    hook = lambda f, t, tag, raw: wire.append((f, t, tag, raw))  # noqa: E731
    p = sb.BoostParams(n_trees=2, max_depth=3, min_child_samples=8, key_bits=1024)

    def guest(ch: Any) -> Any:
        aligned = psi.run_guest(ch, guest_ids, "weather")
        assert [rows[i] for i in aligned] == list(range(n))
        model = sb.train_guest(ch, xg, y, p)
        return sb.predict_guest(ch, model, xg)

    def host(ch: Any) -> Any:
        aligned = psi.run_host(ch, host_ids, "env")
        assert aligned == shared
        model = sb.train_host(ch, xh, "env")
        sb.predict_host(ch, model, xh)
        return model

    out = LocalFederation(["env", "weather"], on_message=hook).run({"env": guest, "weather": host})
    assert out["weather"].records  # the host owned splits: its decisions did cross
    to_host = b"".join(raw for _, t, _, raw in wire if t == "weather")
    to_guest = b"".join(raw for _, t, _, raw in wire if t == "env")
    everything = to_host + to_guest

    for ident in set(guest_ids) | set(host_ids):  # no id crosses in the clear, not even shared ones
        assert ident.encode() not in everything
        assert psi.hash_to_group(ident) not in everything
        assert psi._hash_u(ident) not in everything
    for enc in _encodings(y) | _encodings(xg):
        assert enc not in to_host, "a label or guest feature value reached the host"
    g0 = np.full(n, y.mean()) - y  # the first tree's gradients
    for enc in _encodings(g0):
        assert enc not in to_host, "a gradient reached the host in the clear"
    for enc in _encodings(xh):
        assert enc not in to_guest, "a host feature value reached the guest"
    for e in out["weather"].binner.edges:
        for enc in _encodings(e):
            assert enc not in to_guest, "a host bin threshold reached the guest"
