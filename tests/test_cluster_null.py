"""A group's non-carrier null read off its own cells (``remnant.tl.cluster_null``, ``call_lesions(cluster_null=True)``).

Each case draws cells' levels on the lesion's scale (0 no change, 1 the configured ratio) with the spread their
expected separation gives, turns them into LLRs as the model relates the two (``llr = s * (t - 1/2)``), and asks
whether the group's null is read off its cells: only where they show two populations straddling the midpoint with
the lower off the model's null. The real-data check (a loss planted in TNBC1's tumour cells) is in
tests/test_real_data.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from remnant.tl.cluster_null import GATE, MIN_GROUP, map_cluster_nulls

SEP = 25.0  # expected separation of a cell at ~4,000 UMI on a 500-gene arm (TNBC1's 1p: 25)


def _cells(rng, levels: list[tuple[float, int]], sd_factor: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """LLRs and separations of cells drawn at ``(level, n)`` pairs; the spread is ``sd_factor / sqrt(SEP)`` in
    level units (the real LLR's spread in its level is below the model's, as its slope is)."""
    sep = np.full(sum(n for _, n in levels), SEP) * rng.uniform(0.6, 1.6, sum(n for _, n in levels))
    t = np.concatenate([np.full(n, lv) for lv, n in levels]) + rng.normal(0, 1, sep.size) * sd_factor / np.sqrt(sep)
    return sep * (t - 0.5), sep


def _one_group(llr, sep):
    n = llr.size
    return map_cluster_nulls(llr, sep, np.full(n, "S1"), np.full(n, "c1"))


def test_two_populations_off_the_null_are_mapped_to_it():
    """Non-carriers that lean to 0.4 of a step and carriers 0.45 above them (TNBC1's planted subclone at 4,400
    UMI): the lower population is read as no change and the upper as the configured ratio, so a non-carrier's
    LLR falls below zero and a carrier's stays above."""
    rng = np.random.default_rng(0)
    llr, sep = _cells(rng, [(0.40, 60), (0.85, 60)])
    out, table = _one_group(llr, sep)
    assert table["mapped"].tolist() == [True]
    row = table.iloc[0]
    assert row["lower"] == pytest.approx(0.40, abs=0.03) and row["distance"] == pytest.approx(0.45, abs=0.05)
    assert row["upper_share"] == pytest.approx(0.5, abs=0.1)
    t = out / sep + 0.5
    assert np.median(t[:60]) == pytest.approx(0.0, abs=0.1) and np.median(t[60:]) == pytest.approx(1.0, abs=0.1)
    assert np.median(out[:60]) < 0 < np.median(out[60:])


@pytest.mark.parametrize(
    "levels, why",
    [
        ([(0.40, 120)], "one population (a lean, or a clonal shallow loss): the two look alike"),
        ([(0.0, 60), (1.0, 60)], "the lower population sits on the model's null"),
        ([(1.0, 60), (2.0, 60)], "both above the midpoint: more copies in some carriers, not non-carriers"),
        ([(-0.3, 60), (0.7, 60)], "the lower population below the null: conservative, left to the model"),
    ],
)
def test_groups_the_model_reads_are_left_as_they_are(levels, why):
    rng = np.random.default_rng(1)
    llr, sep = _cells(rng, levels)
    out, table = _one_group(llr, sep)
    assert not table["mapped"].any(), why
    np.testing.assert_array_equal(out, llr)


def test_lower_population_must_sit_off_the_null_by_the_gate():
    """A lower population 0.05 of a step off the null, with 60 cells of spread 0.08 each (s.e. about 0.01), is
    mapped; with six cells a side it is not: its standard error is then too wide for the gate."""
    rng = np.random.default_rng(2)
    llr, sep = _cells(rng, [(0.05, 60), (1.0, 60)])
    _, table = _one_group(llr, sep)
    assert table["mapped"].item() and abs(table["lower"].item()) > GATE * table["lower_se"].item()
    llr, sep = _cells(rng, [(0.05, 6), (1.0, 6)])
    _, table = _one_group(llr, sep)
    assert not table["mapped"].item()


def test_each_group_is_fitted_on_its_own_cells():
    """Two samples, one with a subclone off the null and one a lean alone, and a group too small to fit: only the
    first is mapped, and the cells without a separation (0: not scored) are left out of every fit."""
    rng = np.random.default_rng(3)
    a, sa = _cells(rng, [(0.40, 60), (0.85, 60)])
    b, sb = _cells(rng, [(0.40, 80)])
    c, sc = _cells(rng, [(0.40, MIN_GROUP - 1)])
    llr = np.concatenate([a, b, c, [5.0]])
    sep = np.concatenate([sa, sb, sc, [0.0]])
    samples = np.array(["S1"] * 120 + ["S2"] * 80 + ["S2"] * (MIN_GROUP - 1) + ["S1"])
    groups = np.array(["c1"] * 120 + ["c1"] * 80 + ["c2"] * (MIN_GROUP - 1) + ["c1"])
    out, table = map_cluster_nulls(llr, sep, samples, groups)
    assert table[["sample", "group", "mapped"]].values.tolist() == [["S1", "c1", True], ["S2", "c1", False]]
    assert table.loc[table["sample"] == "S1", "n_cells"].item() == 120
    assert not np.array_equal(out[:120], llr[:120])
    np.testing.assert_array_equal(out[120:], llr[120:])


def test_reference_cells_define_the_null_and_are_never_mapped():
    """The reference cells (at the model's null by construction) in the group of a subclone off the null: they are
    left out of the fit (its cells are the subclone's 120) and their LLRs are not mapped, the others' are."""
    rng = np.random.default_rng(4)
    a, sa = _cells(rng, [(0.40, 60), (0.85, 60)])
    r, sr = _cells(rng, [(0.0, 30)])
    llr, sep = np.concatenate([a, r]), np.concatenate([sa, sr])
    ref = np.r_[np.zeros(120, bool), np.ones(30, bool)]
    out, table = map_cluster_nulls(llr, sep, np.full(150, "S1"), np.full(150, "c1"), ref)
    assert table[["n_cells", "mapped"]].values.tolist() == [[120, True]]
    np.testing.assert_array_equal(out[ref], llr[ref])
    assert not np.array_equal(out[~ref], llr[~ref])
