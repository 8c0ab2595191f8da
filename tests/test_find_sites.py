"""Site discovery without a VCF (issue 18, item 2): remnant.io.bam.find_sites on the simulator's BAMs
(remnant.sim.bam, reads on a fixed reference with sequencing errors away from the sites) finds the
patient's heterozygous sites that its pooled reads show, and nothing else: not the homozygous
reference positions, not the error positions, not a site the patient is homozygous at."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pysam
import pytest
import scipy.sparse as sp
from test_bam_alleles import PARAMS, SHEET  # the same one-patient cohort (a droplet and a plate sample)

from remnant.errors import InputError
from remnant.io.bam import find_sites
from remnant.sim.bam import reference_bases, write_bam, write_plate_bams
from remnant.sim.cohort import simulate_cohort

#: Sequencing errors per base away from the sites (Illumina's is nearer 0.001 at Q20: this is harsher).
ERRORS = 0.005
MINIMUMS = {"min_depth": 8, "min_minor_reads": 3, "min_minor_fraction": 0.1}


@pytest.fixture(scope="module")
def cohort(genes, markers, gene_sets):
    return simulate_cohort(SHEET, genes, markers, gene_sets, params=copy.deepcopy(PARAMS), seed=5)


@pytest.fixture(scope="module")
def patient(cohort, tmp_path_factory):
    """P1's droplet BAM and plate manifest; the droplet sample's last site made homozygous (every
    molecule ALT) in both samples."""
    folder = tmp_path_factory.mktemp("patient")
    dx, pl = cohort.alleles["P1_dx"].copy(), cohort.alleles["P1_pl"].copy()
    assert list(dx.var_names) == list(pl.var_names)  # one patient: the same sites
    last = dx.n_vars - 1
    for alleles in (dx, pl):
        ad, dp = sp.lil_matrix(alleles.layers["AD"]), sp.csr_matrix(alleles.layers["DP"])
        ad[:, last] = dp[:, last]
        alleles.layers["AD"] = sp.csr_matrix(ad)
    droplet = write_bam(dx, folder / "P1_dx.bam", seed=1, noise=0, error_rate=ERRORS)
    plate = write_plate_bams(pl, folder / "plate", seed=2, noise=0, error_rate=ERRORS)
    return dx, pl, droplet, plate


def regions_of(var: pd.DataFrame, pad: int = 2_000) -> list[tuple[str, int, int]]:
    by = var.groupby(var["chromosome"].astype(str), observed=True)["position"]
    return [(c, int(p.min()) - pad, int(p.max()) + pad) for c, p in by]


def pooled_truth(dx, pl, droplet, plate) -> pd.DataFrame:
    """Per site: the REF, ALT and other molecules the two samples' files hold (what counting gives)."""

    def total(m):
        return np.asarray(sp.csr_matrix(m).sum(axis=0)).ravel()

    alt = total(dx.layers["AD"]) + total(pl.layers["AD"])
    dp = total(dx.layers["DP"]) + total(pl.layers["DP"])
    var = dx.var
    return pd.DataFrame(
        {
            "chromosome": var["chromosome"].astype(str).to_numpy(),
            "position": var["position"].to_numpy(np.int64),
            "ref": var["ref"].astype(str).to_numpy(),
            "alt": var["alt"].astype(str).to_numpy(),
            "ref_n": dp - alt,
            "alt_n": alt,
            "other": total(droplet.oth) + total(plate.oth),
        }
    )


def passing(truth: pd.DataFrame, min_depth, min_minor_reads, min_minor_fraction) -> pd.DataFrame:
    minor = np.minimum(truth["ref_n"], truth["alt_n"])
    depth = truth["ref_n"] + truth["alt_n"]
    keep = (depth >= min_depth) & (minor >= min_minor_reads) & (minor >= min_minor_fraction * depth)
    return truth.loc[keep & (minor > truth["other"])]


def find(patient, **minimums):
    dx, _, droplet, plate = patient
    return find_sites([droplet.path, plate.path], regions_of(dx.var), umi_tag=["UB", None], **(MINIMUMS | minimums))


def test_the_pooled_reads_give_the_simulated_het_sites(patient):
    dx, pl, droplet, plate = patient
    truth = pooled_truth(dx, pl, droplet, plate)
    found = find(patient)
    expect = passing(truth, **MINIMUMS)
    # precision 1.0: every site found is a simulated het site (no reference or error position) ...
    assert set(found["position"]) <= set(truth["position"])
    # ... recall 1.0 of what the reads allow: every site whose pooled molecules pass the minimums
    assert sorted(found["position"]) == sorted(expect["position"])
    # most sites have too few reads at this density (1,432 sites, 132 cells); those with enough are found
    assert len(found) >= 150, len(found)
    merged = found.merge(expect, on=["chromosome", "position"], suffixes=("", "_truth"))
    # REF/ALT are the major/minor base: the simulated pair, ordered by the pooled counts
    assert (
        merged[["ref", "alt"]].apply(frozenset, axis=1) == merged[["ref_truth", "alt_truth"]].apply(frozenset, axis=1)
    ).all()
    np.testing.assert_array_equal(merged["ref_count"], np.maximum(merged["ref_n"], merged["alt_n"]))
    np.testing.assert_array_equal(merged["alt_count"], np.minimum(merged["ref_n"], merged["alt_n"]))
    np.testing.assert_array_equal(merged["other_count"], merged["other"])
    assert (merged["depth"] == merged["ref_count"] + merged["alt_count"]).all()
    assert (merged["minor_fraction"] >= MINIMUMS["min_minor_fraction"]).all()
    assert (found["screen_depth"] >= found["depth"]).all()  # reads: at least the molecules
    info = found.attrs["discovery"]
    assert info["bams"] == 1 + pl.n_obs and info["sites"] == len(found) and info["candidates"] >= len(found)


def test_homozygous_reference_and_error_positions_are_not_sites(patient):
    dx, pl, droplet, plate = patient
    truth = pooled_truth(dx, pl, droplet, plate)
    found = find(patient)
    assert truth["position"].iloc[-1] not in set(found["position"])  # the homozygous (all ALT) site
    # the files do hold the errors: a read screen without the minimums would call many positions
    loose = find(patient, min_depth=2, min_minor_reads=1, min_minor_fraction=0.01)
    errors = set(loose["position"]) - set(truth["position"])
    assert len(errors) > 20, len(errors)
    # and the reference is the simulated one: off the sites, a clear major base is the reference's
    off = loose.loc[~loose["position"].isin(truth["position"]) & (loose["ref_count"] > loose["alt_count"])]
    assert len(off) > 20
    chrom_rank = {c: k for k, c in enumerate(pd.unique(dx.var["chromosome"].astype(str)))}
    ref = [
        "ACGT"[reference_bases(chrom_rank[c], np.array([p - 1]))[0]] for c, p in zip(off["chromosome"], off["position"])
    ]
    assert list(off["ref"]) == ref


@pytest.mark.parametrize(
    "minimums",
    [{"min_minor_reads": 6}, {"min_minor_fraction": 0.3}, {"min_depth": 40}],
    ids=["minor-reads", "minor-fraction", "depth"],
)
def test_each_minimum_removes_exactly_the_sites_below_it(patient, minimums):
    dx, pl, droplet, plate = patient
    found = find(patient, **minimums)
    expect = passing(pooled_truth(dx, pl, droplet, plate), **(MINIMUMS | minimums))
    assert sorted(found["position"]) == sorted(expect["position"])
    assert 0 < len(found) < len(find(patient))


def test_one_sample_alone_finds_fewer(patient):
    dx, pl, droplet, plate = patient
    alone = find_sites(droplet.path, regions_of(dx.var), **MINIMUMS)
    both = find(patient)
    assert set(alone["position"]) <= set(dx.var["position"]) and len(alone) < len(both)


def test_regions_limit_the_sites(patient):
    dx, *_ = patient
    first = dx.var["chromosome"].astype(str).iloc[0]
    one = [r for r in regions_of(dx.var) if r[0] == first]
    found = find_sites(patient[2].path, one, **MINIMUMS)
    assert len(found) and set(found["chromosome"]) == {first}


# ------------------------------------------------------------------------------------------------
# the read filters, by hand
# ------------------------------------------------------------------------------------------------
def hand_bam(path, reads):
    """A sorted, indexed BAM on chr5 of 10-base reads at 995 ``(base at 1000, flag, mapq, baseq, umi)``."""
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": "chr5", "LN": 100_000}]}
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for k, (base, flag, mapq, baseq, umi) in enumerate(reads):
            a = pysam.AlignedSegment(out.header)
            a.query_name, a.reference_id, a.reference_start, a.cigarstring = f"q{k}", 0, 995, "10M"
            a.query_sequence, a.flag, a.mapping_quality = f"AAAAA{base}AAAA", flag, mapq
            quals = [30] * 10
            quals[5] = baseq
            a.query_qualities = pysam.qualitystring_to_array("".join(chr(q + 33) for q in quals))
            a.set_tags([("CB", "c1", "Z"), ("UB", umi, "Z")])
            out.write(a)
    pysam.index(str(path))
    return path


def test_filtered_reads_make_no_site(tmp_path):
    good = [("C", 0, 60, 30, f"u{k}") for k in range(10)]
    minor = [("T", 0, 60, 30, f"v{k}") for k in range(3)]
    region = [("5", 0, 100_000)]  # Ensembl name for the chr5 contig
    kw = {"min_depth": 5, "min_minor_reads": 3, "min_minor_fraction": 0.1}
    site = find_sites(hand_bam(tmp_path / "ok.bam", good + minor), region, **kw)
    assert site[["chromosome", "position", "ref", "alt", "ref_count", "alt_count"]].values.tolist() == [
        ["5", 1001, "C", "T", 10, 3]
    ]
    for name, bad in {
        "mapq": ("T", 0, 5, 30),
        "baseq": ("T", 0, 60, 5),
        "secondary": ("T", 0x100, 60, 30),
        "qcfail": ("T", 0x200, 60, 30),
    }.items():
        reads = good + [(*bad, f"v{k}") for k in range(3)]
        assert find_sites(hand_bam(tmp_path / f"{name}.bam", reads), region, **kw).empty, name
    # one molecule (one UMI) of three reads is one vote: below the minimum of 3 minor molecules
    one_umi = good + [("T", 0, 60, 30, "v0")] * 3
    assert find_sites(hand_bam(tmp_path / "umi.bam", one_umi), region, **kw).empty
    # without UMIs duplicate-flagged reads are skipped; each read is a fragment
    dups = good + [("T", 0x400, 60, 30, f"v{k}") for k in range(3)]
    assert find_sites(hand_bam(tmp_path / "dup.bam", dups), region, umi_tag=None, **kw).empty
    assert len(find_sites(hand_bam(tmp_path / "frag.bam", one_umi), region, umi_tag=None, **kw)) == 1


def test_a_third_base_as_frequent_as_the_minor_makes_no_site(tmp_path):
    reads = [("C", 0, 60, 30, f"u{k}") for k in range(10)]
    reads += [("T", 0, 60, 30, f"v{k}") for k in range(3)] + [("G", 0, 60, 30, f"w{k}") for k in range(3)]
    assert find_sites(hand_bam(tmp_path / "tri.bam", reads), [("chr5", 0, 100_000)], min_depth=5).empty


# ------------------------------------------------------------------------------------------------
# bad input: one line naming the file and what to do
# ------------------------------------------------------------------------------------------------
def test_bad_input(patient, tmp_path):
    dx, _, droplet, plate = patient
    regions = regions_of(dx.var)
    cases = [
        (lambda: find_sites(tmp_path / "missing.bam", regions), r"missing\.bam: BAM file does not exist"),
        (lambda: find_sites(tmp_path / "cells.tsv", regions), r"cells\.tsv: BAM manifest does not exist"),
        (lambda: find_sites([], regions), r"no BAM given"),
        (lambda: find_sites(droplet.path, []), r"no region given"),
        (lambda: find_sites(droplet.path, [("chr5", 10, 5)]), r"empty or negative"),
        (
            lambda: find_sites(droplet.path, [("chr9", 0, 10)]),
            r"P1_dx\.bam: has no contig for the regions on \['chr9'\]",
        ),
        (
            lambda: find_sites(droplet.path, regions, min_minor_reads=0),
            r"minimums min_depth 10, min_minor_reads 0: need 1 <= min_minor_reads",
        ),
        (lambda: find_sites(droplet.path, regions, min_minor_fraction=0.7), r"must lie in \(0, 0\.5\]"),
    ]
    import shutil

    shutil.copy(droplet.path, tmp_path / "bare.bam")
    cases.append((lambda: find_sites(tmp_path / "bare.bam", regions), r"bare\.bam: has no index"))
    for call, pattern in cases:
        with pytest.raises(InputError, match=pattern) as err:
            call()
        assert "\n" not in str(err.value)
