"""Hypothesis strategies for point streams (kept in one place for the analytics tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import strategies as st

from .builders import T0


@st.composite
def point_streams(
    draw: st.DrawFn, max_objects: int = 4, max_points: int = 40, max_step_s: int = 900
) -> pd.DataFrame:
    """Several objects' points in metres, with random time steps (gaps included), random
    walks in space and rows shuffled (analytics must sort)."""
    n_obj = draw(st.integers(1, max_objects))
    frames = []
    for k in range(n_obj):
        n = draw(st.integers(1, max_points))
        steps = draw(st.lists(st.integers(1, max_step_s), min_size=n, max_size=n))
        moves = draw(
            st.lists(st.tuples(st.floats(-200, 200), st.floats(-200, 200)), min_size=n, max_size=n)
        )
        xy = np.cumsum(np.asarray(moves, dtype="float64"), axis=0)
        frames.append(
            pd.DataFrame(
                {
                    "id": f"o{k}",
                    "t": T0 + pd.to_timedelta(np.cumsum(steps), unit="s"),
                    "x": xy[:, 0],
                    "y": xy[:, 1],
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    perm = draw(st.permutations(range(len(df))))
    return df.iloc[list(perm)].reset_index(drop=True)
