"""Allele inputs of the workflow (issue 18): the sheet's `alleles` column checked before any job, rule
read_alleles' step (remnant.workflow.alleles) on a simulated cohort, and the demo simulator writing
cellsnp-lite folders for the samples its parameters choose."""

from __future__ import annotations

import copy
import hashlib
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from simulated import sheet as sim_sheet  # markers, gene_sets, cytobands: conftest.py fixtures

from remnant.errors import InputError
from remnant.io.alleles import read_cellsnp, write_cellsnp
from remnant.sim.cohort import simulate_cohort
from remnant.sim.params import has_alleles, resolve_params
from remnant.workflow.alleles import allele_regions, read_alleles
from remnant.workflow.config import check_input_paths, read_sample_sheet, simulated_paths

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config/schemas/samples.schema.yaml"
CYTOBANDS = ROOT / "resources/annotation/GRCh38_cytobands.tsv"
LESIONS = [{"name": "del5q", "type": "loss", "region": "5q13.1-5q33.3"}]
#: 5q13.1-5q33.3 and the default control region, 0-based half-open bp (GRCh38 cytobands).
DEL5Q = ("chr5", 67_400_000, 160_500_000)
CONTROL = ("chr2", 100_000_000, 180_000_000)
CONFIG = {
    "timepoints": ["diagnosis", "remission"],
    "populations": {"HSC": {}, "CD34": {}},
    "conditions": {"all": ["MDS", "healthy"], "reference": ["healthy"]},
    "demo": {"simulate": False},
}
ROWS = [
    ("P1_dx", "P1", "diagnosis", "CD34", "MDS", "droplet"),
    ("P1_rem", "P1", "remission", "HSC", "MDS", "plate"),
    ("H1", "H1", "", "CD34", "healthy", "droplet"),
]
PARAMS = {"cells_per_sample": {"droplet": 150, "plate": 40}, "alleles": {"enabled": True, "patients": ["P1"]}}


# ------------------------------------------------------------------------------------------------
# the sheet's alleles column
# ------------------------------------------------------------------------------------------------
def write_sheet(folder: Path, alleles: list[str] | None) -> Path:
    """A two-sample sheet (counts files that exist) with an `alleles` column, or without one (None)."""
    header = ["sample", "patient", "timepoint", "population", "condition", "counts"]
    rows = [["S1", "P1", "diagnosis", "HSC", "MDS", "s1.h5"], ["S2", "H1", "NA", "CD34", "healthy", "s2.h5"]]
    for row in rows:
        (folder / row[-1]).write_bytes(row[0].encode())
    if alleles is not None:
        header.append("alleles")
        rows = [[*row, value] for row, value in zip(rows, alleles)]
    path = folder / "samples.tsv"
    path.write_text("".join("\t".join(r) + "\n" for r in [header, *rows]))
    return path


def checked_sheet(folder: Path, alleles: list[str] | None, monkeypatch) -> pd.DataFrame:
    monkeypatch.chdir(folder)
    sheet = read_sample_sheet(write_sheet(folder, alleles), SCHEMA, CONFIG)
    check_input_paths(sheet, "samples.tsv")
    return sheet


def cellsnp_folder(path: Path) -> Path:
    """A small valid cellsnp-lite folder (2 cells x 2 SNPs)."""
    alleles = ad.AnnData(
        obs=pd.DataFrame(index=["AAAC-1", "AAAG-1"]),
        var=pd.DataFrame(
            {
                "chromosome": ["chr5", "chr2"],
                "position": [90_000_001, 120_000_001],
                "ref": ["A", "C"],
                "alt": ["G", "T"],
            },
            index=["a", "b"],
        ),
        layers={"AD": np.array([[1, 0], [0, 2]], np.int32), "DP": np.array([[2, 1], [0, 2]], np.int32)},
    )
    return write_cellsnp(alleles, path)


def test_a_sheet_without_the_column_reads_as_before(tmp_path, monkeypatch):
    without = checked_sheet(tmp_path, None, monkeypatch)
    blank = checked_sheet(tmp_path, ["", ""], monkeypatch)
    assert list(without["alleles"]) == ["", ""]
    pd.testing.assert_frame_equal(without, blank, check_like=True)
    assert list(without["counts"]) == ["s1.h5", "s2.h5"]


def test_an_alleles_folder_is_checked_and_a_blank_cell_means_none(tmp_path, monkeypatch):
    cellsnp_folder(tmp_path / "s1_snps")
    sheet = checked_sheet(tmp_path, ["s1_snps", ""], monkeypatch)
    assert list(sheet["alleles"]) == ["s1_snps", ""]


@pytest.mark.parametrize(
    ("make", "expect"),
    [
        (lambda d: None, ["column 'alleles'", "'snps' does not exist", "--outDir", "leave the cell empty"]),
        (lambda d: (d / "snps").write_text("x"), ["column 'alleles'", "'snps' is a file", "cellSNP.tag.DP.mtx"]),
        (
            lambda d: (cellsnp_folder(d / "snps"), (d / "snps/cellSNP.tag.DP.mtx").unlink()),
            ["column 'alleles'", "lacks cellSNP.tag.DP.mtx or cellSNP.tag.DP.mtx.gz", "whole folder"],
        ),
        (
            lambda d: (cellsnp_folder(d / "snps"), (d / "snps/cellSNP.base.vcf").unlink()),
            ["lacks cellSNP.base.vcf or cellSNP.base.vcf.gz"],
        ),
    ],
    ids=["missing", "a-file", "no-DP", "no-VCF"],
)
def test_a_bad_alleles_folder_is_one_line_naming_the_row(tmp_path, monkeypatch, make, expect):
    make(tmp_path)
    with pytest.raises(InputError) as err:
        checked_sheet(tmp_path, ["", "snps"], monkeypatch)
    message = str(err.value)
    assert "\n" not in message
    for fragment in ["samples.tsv", "line 3 (sample 'S2')", *expect]:
        assert fragment in message, message


def test_an_alleles_folder_inside_results_is_refused(tmp_path, monkeypatch):
    from remnant.workflow.paths import check_not_outputs, sheet_paths

    cellsnp_folder(tmp_path / "results" / "snps")
    sheet = checked_sheet(tmp_path, ["results/snps", ""], monkeypatch)
    paths = sheet_paths(sheet, "samples.tsv")
    assert [(p.field, p.path) for p in paths if p.field == "column 'alleles'"] == [("column 'alleles'", "results/snps")]
    with pytest.raises(InputError) as err:
        check_not_outputs(paths)
    assert "line 2 (sample 'S1')" in str(err.value) and "'results/snps' lies inside" in str(err.value)


def test_the_simulator_s_sheet_names_no_alleles_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "samples.tsv").write_text(
        "sample\tpatient\ttimepoint\tpopulation\tcondition\tformat\talleles\nS1\tP1\tdiagnosis\tHSC\tMDS\th5ad\tsnps\n"
    )
    with pytest.raises(InputError, match="column 'alleles' names 'snps'.*demo.params.alleles"):
        read_sample_sheet(tmp_path / "samples.tsv", SCHEMA, {**CONFIG, "demo": {"simulate": True}})


def test_the_control_region_is_checked_against_the_lesions(cytobands):
    regions = allele_regions(LESIONS, "chr2:100000000-180000000", cytobands)
    assert [(r.name, r.chromosome, r.start, r.end) for r in regions] == [("del5q", *DEL5Q), ("control", *CONTROL)]
    assert [r.name for r in allele_regions(LESIONS, None, cytobands)] == ["del5q"]
    with pytest.raises(InputError, match="overlaps lesion 'del5q'") as err:
        allele_regions(LESIONS, "5q31", cytobands)
    assert err.value.where == "alleles.control_region"
    with pytest.raises(InputError) as err:
        allele_regions(LESIONS, "chr2:100-50", cytobands)
    assert err.value.where == "alleles.control_region" and "null" in str(err.value)


@pytest.mark.parametrize("written", ["dup(2)(q12q31)", "del(2)(q12q31)", "2q12q31", "2q12-2q31"])
def test_a_control_region_in_iscn_reads_as_its_bands_whatever_its_sign(cytobands, written):
    """A control region has no type: a gain's ISCN (dup) reads as the same bands as a loss's (del)."""
    control = allele_regions(LESIONS, written, cytobands)[-1]
    plain = allele_regions(LESIONS, "2q12-2q31", cytobands)[-1]
    assert (control.name, control.chromosome, control.start, control.end) == (
        "control",
        plain.chromosome,
        plain.start,
        plain.end,
    )
    assert control.start > 0 and control.chromosome == "chr2"


# ------------------------------------------------------------------------------------------------
# rule read_alleles' step on a simulated cohort
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cohort(genes, markers, gene_sets):
    return simulate_cohort(sim_sheet(ROWS), genes, markers, gene_sets, params=copy.deepcopy(PARAMS), seed=3)


def folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for file in sorted(folder.iterdir()):
        h.update(file.name.encode() + file.read_bytes() + str(file.stat().st_mtime_ns).encode())
    return h.hexdigest()


def inside(var: pd.DataFrame, region: tuple) -> np.ndarray:
    pos0 = var["position"].to_numpy(np.int64) - 1
    return (var["chromosome"].astype(str).to_numpy() == region[0]) & (pos0 >= region[1]) & (pos0 < region[2])


def test_read_alleles_keeps_the_kept_cells_and_the_regions_sites(cohort, tmp_path):
    sample = "P1_dx"
    truth = cohort.alleles[sample]
    # the folder lacks 3 of the sample's cells (no allele data) and the workflow kept every other cell
    listed = truth[3:].copy()
    folder = write_cellsnp(listed, tmp_path / "snps")
    kept = pd.Index([f"{sample}:{b}" for b in truth.obs_names[::2]])
    ad.AnnData(obs=pd.DataFrame(index=kept)).write_h5ad(tmp_path / "filtered.h5ad")
    before = folder_digest(folder)

    out = tmp_path / "alleles" / f"{sample}.h5ad"
    out.parent.mkdir()
    read_alleles(
        str(folder),
        str(tmp_path / "filtered.h5ad"),
        str(out),
        sample=sample,
        lesions=LESIONS,
        control_region="chr2:100000000-180000000",
        cytobands=str(CYTOBANDS),
    )
    got = ad.read_h5ad(out)
    assert folder_digest(folder) == before  # the user's folder is only read

    sites = inside(truth.var, DEL5Q) | inside(truth.var, CONTROL)
    assert 0 < sites.sum() < truth.n_vars  # the simulator's sites reach beyond the configured region
    assert list(got.obs_names) == list(kept)
    assert list(got.var["site_id"]) == list(truth.var["site_id"][sites])
    assert got.var["position"].to_numpy().tolist() == truth.var["position"][sites].tolist()
    rows = np.array([truth.obs_names.get_loc(b) for b in truth.obs_names[::2]])
    for tag in ("AD", "DP"):
        assert got.layers[tag].dtype == np.int32 and got.layers[tag].format == "csr"
        expect = truth.layers[tag][rows][:, np.flatnonzero(sites)].toarray()
        expect[rows < 3] = 0  # cells the folder does not list: zeros
        np.testing.assert_array_equal(got.layers[tag].toarray(), expect)
    np.testing.assert_array_equal(got.obs["has_alleles"].to_numpy(), rows >= 3)
    info = got.uns["alleles"]
    assert info["n_cells"] == len(kept) and info["n_matched"] == int((rows >= 3).sum())
    assert info["n_barcodes"] == listed.n_obs and info["n_sites_read"] == truth.n_vars
    assert info["n_sites"] == int(sites.sum())
    assert info["region_sites"] == {
        "del5q": int(inside(truth.var, DEL5Q).sum()),
        "control": int(inside(truth.var, CONTROL).sum()),
    }
    assert info["path"] == str(folder)


def test_read_alleles_refuses_another_sample_s_folder(cohort, tmp_path):
    folder = write_cellsnp(cohort.alleles["P1_rem"], tmp_path / "snps")
    cells = [f"P1_dx:{b}" for b in cohort.alleles["P1_dx"].obs_names]
    ad.AnnData(obs=pd.DataFrame(index=cells)).write_h5ad(tmp_path / "filtered.h5ad")
    with pytest.raises(InputError) as err:
        read_alleles(
            str(folder),
            str(tmp_path / "filtered.h5ad"),
            str(tmp_path / "out.h5ad"),
            sample="P1_dx",
            lesions=LESIONS,
            control_region=None,
            cytobands=str(CYTOBANDS),
            counts="inputs/P1_dx.h5",
        )
    message = str(err.value)
    assert "\n" not in message and "sample P1_dx" in message and "inputs/P1_dx.h5" in message
    assert "another sample's cellsnp-lite output" in message
    assert not (tmp_path / "out.h5ad").exists()


# ------------------------------------------------------------------------------------------------
# the simulator writes allele data for the chosen samples only
# ------------------------------------------------------------------------------------------------
def test_alleles_patients_chooses_the_samples_and_changes_no_draw(cohort, genes, markers, gene_sets):
    assert sorted(cohort.alleles) == ["P1_dx", "P1_rem"]
    assert set(cohort.allele_truth["patient"]) == {"P1"}
    every = simulate_cohort(
        sim_sheet(ROWS),
        genes,
        markers,
        gene_sets,
        params={**PARAMS, "alleles": {"enabled": True}},
        seed=3,
    )
    assert sorted(every.alleles) == ["H1", "P1_dx", "P1_rem"]
    for sample in ("P1_dx", "P1_rem"):  # P1's allele draws and every sample's counts are the same
        for tag in ("AD", "DP"):
            assert (cohort.alleles[sample].layers[tag] != every.alleles[sample].layers[tag]).nnz == 0
    for sample in cohort.counts:
        assert (cohort.counts[sample].X != every.counts[sample].X).nnz == 0
    assert cohort.cells.equals(every.cells)


def test_an_unknown_alleles_patient_is_refused():
    with pytest.raises(InputError) as err:
        resolve_params({"alleles": {"enabled": True, "patients": ["P9"]}}, samples=sim_sheet(ROWS), root="demo.params")
    assert err.value.where == "demo.params.alleles.patients" and "'P9'" in str(err.value)


def test_the_demo_writes_a_cellsnp_folder_per_chosen_sample(genes, tmp_path, monkeypatch):
    from remnant.workflow.demo import simulate_demo

    monkeypatch.chdir(tmp_path)
    table = sim_sheet(ROWS).assign(format=["h5ad", "table", "10x_h5"])
    p = resolve_params(copy.deepcopy(PARAMS), samples=table)
    chosen = [s for s, row in table.iterrows() if has_alleles(row, p)]
    sheet = simulated_paths(table, p["index_sort"]["technologies"], allele_samples=chosen, folder="inputs")
    assert list(sheet["alleles"]) == ["inputs/P1_dx.cellsnp", "inputs/P1_rem.cellsnp", ""]
    simulate_demo(
        sheet.to_dict(orient="records"),
        genes=str(ROOT / "resources/annotation/GRCh38_genes.tsv.gz"),
        markers=str(ROOT / "resources/gene_sets/HSPC_MARKERS.tsv"),
        gene_sets=str(ROOT / "resources/gene_sets"),
        params=copy.deepcopy(PARAMS),
        seed=3,
        cells="cells.tsv.gz",
        patients="patients.tsv",
    )
    assert sorted(p.name for p in Path("inputs").iterdir() if p.name.endswith(".cellsnp")) == [
        "P1_dx.cellsnp",
        "P1_rem.cellsnp",
    ]
    written = read_cellsnp("inputs/P1_dx.cellsnp")
    truth = pd.read_csv("cells.tsv.gz", sep="\t")
    assert list(written.obs_names) == list(truth.loc[truth["sample"] == "P1_dx", "barcode"])
    counts = ad.read_h5ad("inputs/P1_dx.h5ad")
    assert list(counts.obs_names) == list(written.obs_names)


def test_a_cohort_plans_read_alleles_only_for_samples_with_a_folder(tmp_path):
    """The workflow's dry run: read_alleles for the one sample whose row names a folder; none without the column."""
    sys.path.insert(0, str(ROOT / "tests"))
    from bad_inputs import Cohort

    cohort = Cohort(tmp_path)
    cellsnp_folder(tmp_path / "snps")

    def planned() -> list[str]:
        run = subprocess.run(
            [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path)]
            + ["--configfile", str(tmp_path / "config.yaml"), "-n", "--quiet", "rules", "--cores", "1"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        return [line.split()[0] for line in run.stdout.splitlines() if line.strip()]

    assert "read_alleles" not in planned()
    rows = [line.split("\t") for line in cohort.sheet_text().splitlines()]
    cohort.write_sheet([[*rows[0], "alleles"]] + [[*r, "snps" if r[0] == "P1_dx_HSC" else ""] for r in rows[1:]])
    lines = planned()
    assert "read_alleles" in lines
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path)]
        + ["--configfile", str(tmp_path / "config.yaml"), "-n", "results/alleles/P1_dx_HSC.h5ad", "--cores", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "read_alleles" in run.stdout and "cluster_cells" not in run.stdout  # per sample: no wait on clustering


# ------------------------------------------------------------------------------------------------
# reads: the sheet's bam column, config alleles.sites, rule count_alleles' step
# ------------------------------------------------------------------------------------------------
def write_bam_sheet(folder: Path, bam: str, alleles: str = "") -> Path:
    """The two-sample sheet with S2's `bam` (and `alleles`) cells filled."""
    path = write_sheet(folder, ["", alleles])
    lines = path.read_text().splitlines()
    lines = [lines[0] + "\tbam", lines[1] + "\t", lines[2] + f"\t{bam}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def bam_sheet(folder: Path, bam: str, monkeypatch, alleles: str = "") -> pd.DataFrame:
    monkeypatch.chdir(folder)
    sheet = read_sample_sheet(write_bam_sheet(folder, bam, alleles), SCHEMA, CONFIG)
    check_input_paths(sheet, "samples.tsv")
    return sheet


def tiny_bam(path: Path) -> Path:
    """A real indexed BAM of 2 cells x 2 SNPs (remnant.sim.bam)."""
    from remnant.sim.bam import write_bam

    cellsnp_folder(path.parent / "tiny.cellsnp")
    write_bam(read_cellsnp(path.parent / "tiny.cellsnp"), path, seed=1)
    return path


def test_a_bam_or_a_manifest_is_checked(tmp_path, monkeypatch):
    tiny_bam(tmp_path / "s2.bam")
    sheet = bam_sheet(tmp_path, "s2.bam", monkeypatch)
    assert list(sheet["bam"]) == ["", "s2.bam"] and list(sheet["alleles"]) == ["", ""]
    (tmp_path / "plate").mkdir()
    (tmp_path / "plate/manifest.tsv").write_text("cell\tbam\nAAAC-1\t../s2.bam\n")
    assert list(bam_sheet(tmp_path, "plate/manifest.tsv", monkeypatch)["bam"]) == ["", "plate/manifest.tsv"]


@pytest.mark.parametrize(
    ("value", "make", "expect"),
    [
        ("s2.bam", lambda d: None, ["column 'bam'", "'s2.bam' does not exist", "leave the cell empty"]),
        (
            "s2.bam",
            lambda d: (tiny_bam(d / "s2.bam"), (d / "s2.bam.bai").unlink()),
            ["column 'bam'", "s2.bam' has no index", "samtools index"],
        ),
        ("s2.cram", lambda d: (d / "s2.cram").write_text("x"), ["ends in neither .bam", ".tsv / .txt", "manifest"]),
        (
            "m.tsv",
            lambda d: (d / "m.tsv").write_text("cell\tbam\nA01\tcells/A01.bam\n"),
            ["cells/A01.bam' (cell 'A01' of the manifest 'm.tsv') does not exist", "relative to its folder"],
        ),
        ("m.tsv", lambda d: (d / "m.tsv").write_text("A01 cells/A01.bam\n"), ["the manifest 'm.tsv'", "cell<TAB>"]),
    ],
    ids=["missing", "no-index", "not-a-bam", "manifest-bam-missing", "manifest-not-tsv"],
)
def test_a_bad_bam_is_one_line_naming_the_row(tmp_path, monkeypatch, value, make, expect):
    make(tmp_path)
    with pytest.raises(InputError) as err:
        bam_sheet(tmp_path, value, monkeypatch)
    message = str(err.value)
    assert "\n" not in message
    for fragment in ["samples.tsv", "line 3 (sample 'S2')", *expect]:
        assert fragment in message, message


def test_a_row_names_alleles_or_bam_not_both(tmp_path, monkeypatch):
    tiny_bam(tmp_path / "s2.bam")
    with pytest.raises(InputError) as err:
        bam_sheet(tmp_path, "s2.bam", monkeypatch, alleles="tiny.cellsnp")
    message = str(err.value)
    assert "\n" not in message and "line 3 (sample 'S2')" in message
    assert "columns 'alleles' ('tiny.cellsnp') and 'bam' ('s2.bam') are both filled" in message


def test_a_bam_without_alleles_sites_has_its_sites_found(tmp_path, monkeypatch):
    from remnant.workflow.config import check_bam_config
    from remnant.workflow.demo import check_no_sites

    tiny_bam(tmp_path / "s2.bam")
    sheet = bam_sheet(tmp_path, "s2.bam", monkeypatch)
    discovery = {"min_depth": 10, "min_minor_reads": 3, "min_minor_fraction": 0.05}
    check_bam_config(sheet, None, discovery=discovery, source="config.yaml")  # null: found in the reads
    with pytest.raises(InputError) as err:
        check_bam_config(sheet, None, discovery=discovery | {"min_depth": 2}, source="config.yaml")
    assert err.value.where == "alleles.discovery" and "sample 'S2'" in str(err.value)
    assert "min_minor_reads 3 is above min_depth 2" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError, match="'sites.vcf' does not exist; set alleles.sites"):
        check_bam_config(sheet, "sites.vcf", discovery=discovery, source="config.yaml")
    (tmp_path / "sites.vcf").write_text("##fileformat=VCFv4.2\n")
    check_bam_config(sheet, "sites.vcf", source="config.yaml")
    check_bam_config(sheet.assign(bam=""), None, discovery=discovery | {"min_depth": 2})  # no BAM: nothing found
    with pytest.raises(InputError, match="demo.simulate: true") as err:
        check_no_sites("sites.vcf", source="config.yaml")
    assert err.value.where == "alleles.sites"


# ------------------------------------------------------------------------------------------------
# the sheet's sites column: a patient's own VCF of heterozygous SNPs
# ------------------------------------------------------------------------------------------------
def sites_sheet(folder: Path, sites: list[str], bams: tuple[str, ...] = ("s1.bam",), monkeypatch=None):
    """Three rows (S1, S2 of patient P1; S3 of donor H1) with `bam` (S1's tiny BAM) and `sites` cells, read
    and path-checked in ``folder``."""
    if monkeypatch is not None:
        monkeypatch.chdir(folder)
    rows = [
        ["S1", "P1", "diagnosis", "HSC", "MDS", "s1.h5"],
        ["S2", "P1", "remission", "HSC", "MDS", "s2.h5"],
        ["S3", "H1", "NA", "CD34", "healthy", "s3.h5"],
    ]
    for row in rows:
        (folder / row[-1]).write_bytes(row[0].encode())
    bam = [*bams, "", "", ""][:3]
    header = ["sample", "patient", "timepoint", "population", "condition", "counts", "bam", "sites"]
    lines = [header] + [[*r, b, v] for r, b, v in zip(rows, bam, sites)]
    (folder / "samples.tsv").write_text("".join("\t".join(line) + "\n" for line in lines))
    sheet = read_sample_sheet(folder / "samples.tsv", SCHEMA, CONFIG)
    check_input_paths(sheet, "samples.tsv", base=folder)
    return sheet


def germline_vcf(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr5\t90000001\t.\tA\tG\t.\t.\t.\n"
    )
    return path


def test_a_patient_s_sites_vcf_is_read_and_needs_no_discovery(tmp_path):
    from remnant.workflow.config import check_bam_config, patient_sites
    from remnant.workflow.paths import sheet_paths

    tiny_bam(tmp_path / "s1.bam")
    germline_vcf(tmp_path / "germline/P1.vcf")
    # one file on every row that fills the cell (./ or not), the other rows of the patient left empty
    for cells in (["germline/P1.vcf", "", ""], ["germline/P1.vcf", "./germline/P1.vcf", ""]):
        sheet = sites_sheet(tmp_path, cells)
        assert list(sheet["sites"]) == cells and patient_sites(sheet) == {"P1": "germline/P1.vcf"}
    # the only BAM patient brings its sites: inconsistent discovery minimums are not even looked at ...
    discovery = {"min_depth": 2, "min_minor_reads": 3, "min_minor_fraction": 0.05}
    check_bam_config(sheet, None, discovery=discovery, source="config.yaml")
    # ... but are without them
    with pytest.raises(InputError, match="min_minor_reads 3 is above min_depth 2"):
        check_bam_config(sheet.assign(sites=""), None, discovery=discovery, source="config.yaml")
    # empty cells (or no column: read_sample_sheet fills it empty): no patient has its own sites
    assert patient_sites(sheet.assign(sites="")) == {}
    # the VCF is a user path: checked against the workflow's outputs like the others
    assert [p.path for p in sheet_paths(sheet, "samples.tsv") if p.field == "column 'sites'"] == [
        "germline/P1.vcf",
        "./germline/P1.vcf",
    ]


@pytest.mark.parametrize(
    ("cells", "expect"),
    [
        (
            ["germline/P1.vcf", "other.vcf", ""],
            [
                "samples.tsv: patient 'P1': column 'sites'",
                "line 2 (sample 'S1') names 'germline/P1.vcf', line 3 (sample 'S2') names 'other.vcf'",
                "give the same path on each of its rows",
            ],
        ),
        (
            ["", "", "germline/P1.vcf"],
            [
                "samples.tsv: line 4 (sample 'S3'): column 'sites'",
                "'germline/P1.vcf' is given for patient 'H1'",
                "no row of the patient names reads (column 'bam')",
                "sites are used only to count BAMs",
            ],
        ),
        (
            ["absent.vcf", "", ""],
            ["samples.tsv: line 2 (sample 'S1'): column 'sites': 'absent.vcf' does not exist", "leave the cell empty"],
        ),
        (
            ["", "germline", ""],
            ["samples.tsv: line 3 (sample 'S2'): column 'sites': 'germline' is a folder", "VCF"],
        ),
    ],
    ids=["two-files", "no-bam", "missing", "folder"],
)
def test_a_bad_sites_cell_is_one_line_naming_the_rows(tmp_path, cells, expect):
    tiny_bam(tmp_path / "s1.bam")
    germline_vcf(tmp_path / "germline/P1.vcf")
    with pytest.raises(InputError) as err:
        sites_sheet(tmp_path, cells)
    message = str(err.value)
    assert "\n" not in message
    for fragment in expect:
        assert fragment in message, message


def test_a_sites_vcf_inside_results_is_refused(tmp_path, monkeypatch):
    from remnant.workflow.paths import check_not_outputs, sheet_paths

    tiny_bam(tmp_path / "s1.bam")
    germline_vcf(tmp_path / "results/alleles/sites/P1.vcf")  # where rule find_sites would write
    sheet = sites_sheet(tmp_path, ["results/alleles/sites/P1.vcf", "", ""], monkeypatch=monkeypatch)
    with pytest.raises(InputError) as err:
        check_not_outputs(sheet_paths(sheet, "samples.tsv"))
    message = str(err.value)
    assert "\n" not in message and "line 2 (sample 'S1')" in message and "column 'sites'" in message
    assert "lies inside the workflow's output folder results/" in message


def test_the_simulator_s_sheet_names_no_sites(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "samples.tsv").write_text(
        "sample\tpatient\ttimepoint\tpopulation\tcondition\tformat\tsites\nS1\tP1\tdiagnosis\tHSC\tMDS\th5ad\tP1.vcf\n"
    )
    with pytest.raises(InputError, match="column 'sites' names 'P1.vcf'.*demo.simulate: true"):
        read_sample_sheet(tmp_path / "samples.tsv", SCHEMA, {**CONFIG, "demo": {"simulate": True}})


def dry_run_jobs(workdir: Path, *targets: str) -> list[dict]:
    """The jobs ``snakemake -n`` plans for ``targets``: rule, input, output (as its plan prints them)."""
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
        + ["--configfile", str(workdir / "config.yaml"), "-n", "--cores", "1", *targets],
        capture_output=True,
        text=True,
        cwd=workdir,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = []
    for line in run.stdout.splitlines():
        line = line.strip()
        if line.startswith(("rule ", "localrule ")):
            jobs.append({"rule": line.split()[1].rstrip(":")})
        elif jobs and line.split(":", 1)[0] in ("input", "output"):
            key, value = line.split(":", 1)
            jobs[-1][key] = [v.strip() for v in value.split(",")]
    return jobs


def test_a_patient_s_own_sites_replace_discovery_and_alleles_sites_in_the_plan(tmp_path):
    """The workflow's dry run: P1 names its VCF (sheet column sites), N1 does not. With alleles.sites null,
    find_sites runs for N1 only and P1's count_alleles takes P1's VCF; with alleles.sites set, no find_sites
    at all, N1 takes alleles.sites and P1 still its own."""
    sys.path.insert(0, str(ROOT / "tests"))
    from bad_inputs import Cohort

    c = Cohort(tmp_path)
    tiny_bam(tmp_path / "bams/p1/P1_dx_HSC.bam")
    tiny_bam(tmp_path / "bams/n1/N1_HSC.bam")
    germline_vcf(tmp_path / "germline/P1.vcf")
    bams = {"P1_dx_HSC": "bams/p1/P1_dx_HSC.bam", "N1_HSC": "bams/n1/N1_HSC.bam"}
    rows = [line.split("\t") for line in c.sheet_text().splitlines()]
    c.write_sheet(
        [[*rows[0], "bam", "sites"]]
        + [[*r, bams.get(r[0], ""), "germline/P1.vcf" if r[0] == "P1_dx_HSC" else ""] for r in rows[1:]]
    )
    targets = ("results/alleles/P1_dx_HSC.cellsnp", "results/alleles/N1_HSC.cellsnp")

    def counted_at(jobs) -> dict[str, str]:
        """count_alleles' sites input per sample (the input that is neither the BAM, the cells nor the bands)."""
        out = {}
        for job in (j for j in jobs if j["rule"] == "count_alleles"):
            sample = job["output"][0].removeprefix("results/alleles/").removesuffix(".cellsnp")
            out[sample] = [i for i in job["input"] if i.endswith(".vcf")]
        return out

    jobs = dry_run_jobs(tmp_path, *targets)
    assert [j["output"] for j in jobs if j["rule"] == "find_sites"] == [["results/alleles/sites/N1.vcf"]]
    assert counted_at(jobs) == {"P1_dx_HSC": ["germline/P1.vcf"], "N1_HSC": ["results/alleles/sites/N1.vcf"]}

    germline_vcf(tmp_path / "cohort_sites.vcf")
    c.set("alleles.sites", "cohort_sites.vcf")
    jobs = dry_run_jobs(tmp_path, *targets)
    assert not [j for j in jobs if j["rule"] == "find_sites"]
    assert counted_at(jobs) == {"P1_dx_HSC": ["germline/P1.vcf"], "N1_HSC": ["cohort_sites.vcf"]}


def test_the_simulator_s_sheet_names_no_bam(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "samples.tsv").write_text(
        "sample\tpatient\ttimepoint\tpopulation\tcondition\tformat\tbam\nS1\tP1\tdiagnosis\tHSC\tMDS\th5ad\tx.bam\n"
    )
    with pytest.raises(InputError, match="column 'bam' names 'x.bam'.*demo.simulate: true"):
        read_sample_sheet(tmp_path / "samples.tsv", SCHEMA, {**CONFIG, "demo": {"simulate": True}})


def sites_vcf(tables: list, path: Path) -> Path:
    from remnant.workflow.demo import write_sites_vcf

    write_sites_vcf(tables, str(path))
    return path


@pytest.mark.parametrize("sample", ["P1_dx", "P1_rem"], ids=["droplet-bam", "plate-manifest"])
def test_count_alleles_gives_back_the_simulated_counts_of_the_kept_cells(cohort, tmp_path, sample):
    """rule count_alleles' step on real small BAMs (remnant.sim.bam): exactly the simulator's AD and DP
    for the kept cells at the regions' sites; the folder reads back through read_alleles."""
    from remnant.sim.bam import write_bam, write_plate_bams
    from remnant.workflow.alleles import count_alleles

    truth = cohort.alleles[sample]
    if sample == "P1_dx":
        bam, umi = str(write_bam(truth, tmp_path / "reads.bam", seed=5).path), "UB"
    else:
        bam, umi = str(write_plate_bams(truth, tmp_path / "plate", seed=5).path), None
    sites = sites_vcf([cohort.alleles["P1_dx"], truth], tmp_path / "sites.vcf")
    kept = pd.Index([f"{sample}:{b}" for b in truth.obs_names[1::2]])
    ad.AnnData(obs=pd.DataFrame(index=kept)).write_h5ad(tmp_path / "filtered.h5ad")
    regions = {"lesions": LESIONS, "control_region": "chr2:100000000-180000000", "cytobands": str(CYTOBANDS)}
    out = tmp_path / "counted.cellsnp"
    count_alleles(
        bam, str(tmp_path / "filtered.h5ad"), str(out), sample=sample, sites=str(sites), umi_tag=umi, **regions
    )
    got = read_cellsnp(out)
    inside_any = inside(truth.var, DEL5Q) | inside(truth.var, CONTROL)
    assert list(got.obs_names) == list(truth.obs_names[1::2])
    assert sorted(got.var["site_id"].astype(str)) == sorted(truth.var["site_id"][inside_any].astype(str))
    cols = pd.Index(truth.var["site_id"].astype(str)).get_indexer(got.var["site_id"].astype(str))
    assert (cols >= 0).all() and len(cols) == int(inside_any.sum())
    for tag in ("AD", "DP"):
        expect = truth.layers[tag][1::2][:, cols].toarray()
        np.testing.assert_array_equal(got.layers[tag].toarray(), expect)
    assert got.layers["DP"].sum() > 0
    table = read_alleles(str(out), str(tmp_path / "filtered.h5ad"), str(tmp_path / "t.h5ad"), sample=sample, **regions)
    assert table.uns["alleles"]["n_matched"] == len(kept) and (table.layers["DP"] != got.layers["DP"]).nnz == 0


def test_count_alleles_refuses_another_sample_s_manifest(cohort, tmp_path):
    from remnant.sim.bam import write_plate_bams
    from remnant.workflow.alleles import count_alleles

    manifest = write_plate_bams(cohort.alleles["P1_rem"], tmp_path / "plate", seed=5).path
    sites = sites_vcf([cohort.alleles["P1_rem"]], tmp_path / "sites.vcf")
    ad.AnnData(obs=pd.DataFrame(index=[f"P1_dx:{b}" for b in cohort.alleles["P1_dx"].obs_names])).write_h5ad(
        tmp_path / "filtered.h5ad"
    )
    with pytest.raises(InputError) as err:
        count_alleles(
            str(manifest),
            str(tmp_path / "filtered.h5ad"),
            str(tmp_path / "out"),
            sample="P1_dx",
            sites=str(sites),
            lesions=LESIONS,
            control_region=None,
            cytobands=str(CYTOBANDS),
            umi_tag=None,
        )
    assert "\n" not in str(err.value) and "another sample's" in str(err.value) and "sample P1_dx" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_bam_samples_must_have_allele_data():
    with pytest.raises(InputError) as err:
        resolve_params(
            {"alleles": {"enabled": True, "patients": ["P1"], "bam_samples": ["P1_dx", "H1"]}},
            samples=sim_sheet(ROWS),
            root="demo.params",
        )
    assert err.value.where == "demo.params.alleles.bam_samples" and "['H1']" in str(err.value)


def test_the_demo_writes_reads_and_sites_for_bam_samples(genes, tmp_path, monkeypatch):
    from remnant.io.bam import read_bam_manifest
    from remnant.workflow.demo import SIMULATED_SITES, simulate_demo

    monkeypatch.chdir(tmp_path)
    params = copy.deepcopy(PARAMS) | {
        "alleles": {"enabled": True, "patients": ["P1"], "bam_samples": ["P1_dx", "P1_rem"]}
    }
    table = sim_sheet(ROWS).assign(format=["h5ad", "table", "10x_h5"])
    p = resolve_params(copy.deepcopy(params), samples=table)
    chosen = [s for s, row in table.iterrows() if has_alleles(row, p)]
    sheet = simulated_paths(table, p["index_sort"]["technologies"], allele_samples=chosen, bam_samples=chosen)
    assert list(sheet["bam"]) == ["results/demo/inputs/P1_dx.bam", "results/demo/inputs/P1_rem.bams.tsv", ""]
    assert list(sheet["alleles"]) == ["", "", ""]
    simulate_demo(
        sheet.to_dict(orient="records"),
        genes=str(ROOT / "resources/annotation/GRCh38_genes.tsv.gz"),
        markers=str(ROOT / "resources/gene_sets/HSPC_MARKERS.tsv"),
        gene_sets=str(ROOT / "resources/gene_sets"),
        params=params,
        seed=3,
        cells="cells.tsv.gz",
        patients="patients.tsv",
    )
    assert Path("results/demo/inputs/P1_dx.bam.bai").is_file()
    manifest = read_bam_manifest("results/demo/inputs/P1_rem.bams.tsv")
    truth = read_cellsnp("results/demo/truth/P1_rem.cellsnp")
    assert list(manifest) == list(truth.obs_names) and all(p.is_file() for p in manifest.values())
    from remnant.io.bam import read_sites

    sites = read_sites(SIMULATED_SITES)
    assert len(sites) == truth.n_vars and set(sites["position"]) == set(truth.var["position"])
    assert not any(Path("results/demo/inputs").glob("*.cellsnp"))


# ------------------------------------------------------------------------------------------------
# without alleles.sites: rule find_sites per patient, its VCF counted by count_alleles
# ------------------------------------------------------------------------------------------------
#: Minimums of the tests (the simulated reads are few); two minor molecules would let errors in (27 of 774
#: sites at 0.5% errors per base), three let one in at 0.5%, none at 0.1%.
DISCOVERY = {"min_depth": 6, "min_minor_reads": 3, "min_minor_fraction": 0.1}


def pooled_passing(tables: list, written: list, regions: list[tuple], minimums: dict) -> set[tuple[str, int]]:
    """(chromosome, position) of the simulated sites inside the regions whose pooled REF and ALT counts
    pass the minimums, the minor allele above the other bases (``written``: the BAMs' other-base molecules)."""
    var = tables[0].var

    def pooled(matrices):
        return sum(np.asarray(m.sum(axis=0)).ravel() for m in matrices)

    alt, dp, other = (
        pooled([t.layers["AD"] for t in tables]),
        pooled([t.layers["DP"] for t in tables]),
        pooled([w.oth for w in written]),
    )
    minor = np.minimum(alt, dp - alt)
    ok = (dp >= minimums["min_depth"]) & (minor >= minimums["min_minor_reads"]) & (minor > other)
    ok &= (minor >= minimums["min_minor_fraction"] * dp) & np.any([inside(var, r) for r in regions], axis=0)
    return {(c, int(p)) for c, p, k in zip(var["chromosome"].astype(str), var["position"], ok, strict=True) if k}


def test_find_sites_step_writes_the_patient_s_vcf_and_count_alleles_reads_it(cohort, tmp_path):
    """rule find_sites' step on P1's droplet BAM and plate manifest (simulated, 0.1% errors per base, as
    Illumina's; at 0.5% and these low minimums one error position of 749 passes): the VCF holds
    the het sites the pooled reads allow inside the lesion and the control region, nothing else; rule
    count_alleles' step then counts a sample at exactly those sites."""
    from remnant.io.bam import read_sites
    from remnant.sim.bam import write_bam, write_plate_bams
    from remnant.workflow.alleles import count_alleles, find_sites

    dx, rem = cohort.alleles["P1_dx"], cohort.alleles["P1_rem"]
    written = [
        write_bam(dx, tmp_path / "P1_dx.bam", seed=5, noise=0, error_rate=0.001),
        write_plate_bams(rem, tmp_path / "plate", seed=6, noise=0, error_rate=0.001),
    ]
    bam, manifest = (w.path for w in written)
    regions = {"lesions": LESIONS, "control_region": "chr2:100000000-180000000", "cytobands": str(CYTOBANDS)}
    vcf = tmp_path / "sites" / "P1.vcf"
    vcf.parent.mkdir()
    found = find_sites(
        [str(bam), str(manifest)],
        str(vcf),
        patient="P1",
        samples=["P1_dx", "P1_rem"],
        umi_tags=["UB", None],
        **regions,
        **DISCOVERY,
    )
    expect = pooled_passing([dx, rem], written, [DEL5Q, CONTROL], DISCOVERY)
    assert len(expect) > 50
    got = set(zip(found["chromosome"], found["position"].astype(int), strict=True))
    assert got == expect
    back = read_sites(vcf)
    assert set(zip(back["chromosome"], back["position"].astype(int), strict=True)) == expect
    assert (back[["ref", "alt"]].to_numpy() == found[["ref", "alt"]].to_numpy()).all()
    text = vcf.read_text()
    assert "##contig=<ID=chr5>" in text and f"DP={found['depth'].iloc[0]};AD=" in text
    with pytest.raises(FileExistsError):  # a written VCF is never overwritten
        find_sites([str(bam)], str(vcf), patient="P1", samples=["P1_dx"], **regions, **DISCOVERY)

    kept = pd.Index([f"P1_dx:{b}" for b in dx.obs_names])
    ad.AnnData(obs=pd.DataFrame(index=kept)).write_h5ad(tmp_path / "filtered.h5ad")
    counted = count_alleles(
        str(bam),
        str(tmp_path / "filtered.h5ad"),
        str(tmp_path / "P1_dx.cellsnp"),
        sample="P1_dx",
        sites=str(vcf),
        **regions,
    )
    assert counted.n_vars == len(found)
    cols = pd.Index(dx.var["position"].astype(int)).get_indexer(counted.var["position"].astype(int))
    dp = dx.layers["DP"][:, cols].toarray()
    np.testing.assert_array_equal(counted.layers["DP"].toarray(), dp)  # every molecule of the sites counted


def test_no_site_found_is_one_line_naming_the_patient(cohort, tmp_path):
    from remnant.sim.bam import write_bam
    from remnant.workflow.alleles import find_sites

    bam = write_bam(cohort.alleles["P1_dx"], tmp_path / "P1_dx.bam", seed=5, noise=0).path
    with pytest.raises(InputError) as err:
        find_sites(
            [str(bam)],
            str(tmp_path / "P1.vcf"),
            patient="P1",
            samples=["P1_dx"],
            lesions=LESIONS,
            control_region=None,
            cytobands=str(CYTOBANDS),
            min_depth=100_000,
            min_minor_reads=3,
            min_minor_fraction=0.05,
        )
    message = str(err.value)
    assert "\n" not in message and "patient P1" in message and "alleles.discovery" in message
    assert "['P1_dx']" in message and "lower these" in message and not (tmp_path / "P1.vcf").exists()


def test_without_alleles_sites_the_workflow_finds_each_patient_s_sites(cohort, tmp_path):
    """The workflow: with a bam row and alleles.sites null, rule find_sites runs per patient with BAM samples
    (here P1: one droplet BAM and one plate manifest, pooled) and count_alleles takes that patient's VCF;
    with alleles.sites set, no find_sites job."""
    sys.path.insert(0, str(ROOT / "tests"))
    from bad_inputs import Cohort

    from remnant.sim.bam import write_bam, write_plate_bams

    c = Cohort(tmp_path)
    (tmp_path / "bams").mkdir()
    written = [
        write_bam(cohort.alleles["P1_dx"], tmp_path / "bams/P1_dx_HSC.bam", seed=5, noise=0),
        write_plate_bams(cohort.alleles["P1_rem"], tmp_path / "bams/P1_rem_HSC", seed=6, noise=0),
    ]
    bams = {"P1_dx_HSC": "bams/P1_dx_HSC.bam", "P1_rem_HSC": "bams/P1_rem_HSC/manifest.tsv"}
    rows = [line.split("\t") for line in c.sheet_text().splitlines()]
    c.write_sheet([[*rows[0], "bam"]] + [[*r, bams.get(r[0], "")] for r in rows[1:]])
    c.set("alleles.discovery", DISCOVERY)

    def snakemake(*args: str) -> subprocess.CompletedProcess:
        run = subprocess.run(
            [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path)]
            + ["--configfile", str(tmp_path / "config.yaml"), "--cores", "1", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        return run

    plan = snakemake("-n", "results/alleles/P1_dx_HSC.cellsnp", "results/alleles/P1_rem_HSC.cellsnp").stdout
    assert plan.count("rule find_sites:") == 1 and plan.count("rule count_alleles:") == 2
    assert "results/alleles/sites/P1.vcf" in plan
    snakemake("results/alleles/sites/P1.vcf")  # the rule itself: a few seconds
    got = pd.read_csv(tmp_path / "results/alleles/sites/P1.vcf", sep="\t", comment="#", header=None)
    tables = [cohort.alleles["P1_dx"], cohort.alleles["P1_rem"]]
    expect = pooled_passing(tables, written, [DEL5Q, CONTROL], DISCOVERY)
    assert set(zip(got[0], got[1].astype(int), strict=True)) == expect
    assert (tmp_path / "logs/find_sites/P1.log").read_text().count("wrote") == 1

    (tmp_path / "given.vcf").write_text((tmp_path / "results/alleles/sites/P1.vcf").read_text())
    c.set("alleles.sites", "given.vcf")
    plan = snakemake("-n", "results/alleles/P1_dx_HSC.cellsnp").stdout
    assert "rule find_sites:" not in plan and "given.vcf" in plan
