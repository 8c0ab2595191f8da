"""remnant.pl.clusters: UMAP figures of keys with many levels."""

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from PIL import Image

from remnant.pl.clusters import MAX_LEGEND_LEVELS, plot_umaps


def test_umap_of_thousands_of_levels_is_drawn_without_a_legend(tmp_path, monkeypatch):
    """Leiden on a large cohort can give thousands of clusters (91,335 on the tiled 1M benchmark
    cohort, whose legend took matplotlib over ten minutes): above MAX_LEGEND_LEVELS no legend."""
    n = 6000
    levels = [str(i % 3000) for i in range(n)]
    obs = pd.DataFrame(
        {"leiden": pd.Categorical(levels), "timepoint": pd.Categorical(["diagnosis", "remission"] * (n // 2))},
        index=[str(i) for i in range(n)],
    )
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_umap"] = np.random.default_rng(0).normal(size=(n, 2))
    paths = [str(tmp_path / "leiden.png"), str(tmp_path / "timepoint.png")]
    legends = {}
    draw = sc.pl.umap

    def spy(adata, **kwargs):
        legends[kwargs["color"]] = kwargs.get("legend_loc", "right margin")
        return draw(adata, **kwargs)

    monkeypatch.setattr(sc.pl, "umap", spy)
    plot_umaps(adata, ["leiden", "timepoint"], paths)
    assert MAX_LEGEND_LEVELS < 3000
    assert legends == {"leiden": None, "timepoint": "right margin"}
    for path in paths:
        with Image.open(path) as image:
            colours = np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)
            assert image.size[0] > 300 and len(colours) > 10
