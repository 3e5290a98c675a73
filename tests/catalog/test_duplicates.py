"""catalog.duplicates on the real Milvus: groups through the index equal the N^2 scan's, dense regions too."""

from __future__ import annotations

import numpy as np
import pytest

from catalog.duplicates import brute_force_groups, find_groups


def _two_dense_clusters_and_one_bridge(dim: int = 64, size: int = 10, seed: int = 3) -> np.ndarray:
    """Two clusters of `size` images (cosine ~0.99 within each); one image of each leans towards the other
    so that this pair scores ~0.96 while every other pair across the clusters stays below 0.95. Each
    bridge image has more than `neighbours` cluster mates closer than its bridge partner."""
    rng = np.random.default_rng(seed)
    e1 = np.zeros(dim, np.float32)
    e1[0] = 1.0
    e2 = np.zeros(dim, np.float32)
    e2[:2] = 0.9, np.sqrt(1 - 0.81)  # cos(e1, e2) = 0.9: an angle of 0.451 rad

    def toward(a: np.ndarray, b: np.ndarray, angle: float) -> np.ndarray:
        """`a` turned by `angle` radians in the plane of a and b, towards b."""
        ortho = b - (a @ b) * a
        ortho /= np.linalg.norm(ortho)
        return np.cos(angle) * a + np.sin(angle) * ortho

    def cluster(centre: np.ndarray) -> np.ndarray:
        noise = 0.005 * rng.standard_normal((size, dim)).astype(np.float32)
        noise[:, :2] = 0  # off the e1-e2 plane
        v = centre + noise
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    x, y = cluster(e1), cluster(e2)
    x[0], y[0] = toward(e1, e2, 0.09), toward(e2, e1, 0.09)  # 0.451 - 0.18 rad apart: cosine ~0.964
    return np.vstack([x, y]).astype(np.float32)


@pytest.mark.integration
def test_a_bridge_beyond_the_neighbour_limit_still_joins_its_groups(catalog):
    vectors = _two_dense_clusters_and_one_bridge()
    names = [f"img-{i:03d}.jpg" for i in range(len(vectors))]
    sims = vectors @ vectors.T
    assert 0.95 <= sims[0, 10] < sims[0, 1:10].min()  # the bridge ranks after all 9 cluster mates
    assert (sims[:10, 10:] >= 0.95).sum() == 1  # and is the only link across
    catalog.create(vectors.shape[1], "fp-dense")
    catalog.upsert(names, vectors)
    catalog.flush()
    expected = brute_force_groups(names, vectors, 0.95)
    assert expected == [names]  # the scan sees one group through the bridge
    groups = find_groups(catalog, 0.95, neighbours=4)  # 4 < 9 mates: the first search is capped
    assert [g.names for g in groups] == expected
    assert groups[0].pairs == 2 * 45 + 1  # every pair within each cluster, and the bridge
