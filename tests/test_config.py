"""Config and sample-sheet validation: every bad input gives a message naming file, row/key and value."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from remnant.errors import InputError
from remnant.workflow.config import infer_format, load_yaml, read_sample_sheet, validate_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG_SCHEMA = ROOT / "config/schemas/config.schema.yaml"
SHEET_SCHEMA = ROOT / "config/schemas/samples.schema.yaml"
HEADER = "sample\tpatient\ttimepoint\tpopulation\tcondition\tcounts"


@pytest.fixture()
def config():
    return validate_config(load_yaml(ROOT / "config/config.yaml"), CONFIG_SCHEMA)


def write(tmp_path, text, name="samples.tsv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_shipped_template_and_its_sheet_are_valid(config):
    """The template a user copies analyses real files: it never simulates, and its sheet reads."""
    assert config["demo"]["simulate"] is False
    sheet = read_sample_sheet(ROOT / "config/samples.tsv", SHEET_SCHEMA, config)
    assert sheet.index.is_unique and (sheet["counts"] != "").all()


def test_demo_config_and_sheet_are_valid():
    config = load_yaml(ROOT / "config/config.yaml")
    config.update(load_yaml(ROOT / "config/demo/config.yaml"))  # as bin/demo: the overlay over the template
    config = validate_config(config, CONFIG_SCHEMA)
    assert config["demo"]["simulate"] is True
    sheet = read_sample_sheet(ROOT / "config/demo/samples.tsv", SHEET_SCHEMA, config)
    assert (sheet["counts"] == "").all() and (sheet["index_sort"] == "").all()  # the sheet names no file
    assert sheet.index.is_unique
    assert set(sheet["technology"]) == {"droplet", "plate"}
    assert (sheet.loc[sheet["condition"] == "healthy", "timepoint"] == "").all()
    assert set(sheet["format"]) >= {"10x_h5", "10x_mtx", "h5ad", "table_genes_x_cells", "table_cells_x_genes"}


def test_defaults_are_filled(config):
    minimal = validate_config({"populations": {"HSC": "stem"}}, CONFIG_SCHEMA)
    assert minimal["qc"]["mad"]["counts"] == 5
    assert minimal["cluster"]["integrate"] == ["patient", "technology"]
    assert minimal["timepoints"] == ["diagnosis", "remission", "relapse"]


def test_a_lesion_copied_from_a_karyotype_needs_no_type(config):
    """The schema leaves ``type`` out where the region's ISCN says it; the Methods paragraph names it."""
    from remnant.workflow.report import methods_paragraph

    config = copy.deepcopy(config)
    config["lesions"] = [{"name": "del5q", "region": "del(5)(q13q33)"}, {"name": "tri8", "region": "+8"}]
    config = validate_config(config, CONFIG_SCHEMA)
    text = methods_paragraph(config, {}, n_cells=10, n_samples=1, n_patients=1)
    assert "del5q (loss, del(5)(q13q33)), tri8 (gain, +8)" in text


def test_a_bare_chromosome_region_is_read_as_yaml_gives_it(config):
    # `region: 7` and `region: -7` are YAML integers: monosomy 7 written as a user would
    from remnant.io.annotation import load_cytobands
    from remnant.tl.lesions import parse_lesions

    cytobands = load_cytobands(ROOT / "resources/annotation/GRCh38_cytobands.tsv")
    for region in (7, -7):
        c = copy.deepcopy(config)
        c["lesions"] = [{"name": "mono7", "type": "loss", "region": region}]
        (lesion,) = parse_lesions(validate_config(c, CONFIG_SCHEMA)["lesions"], cytobands)
        assert (lesion.chromosome, lesion.start) == ("chr7", 0)
    # and a whole chromosome as the allele control region
    from remnant.workflow.alleles import allele_regions

    c = copy.deepcopy(config)
    c["alleles"]["control_region"] = 2
    checked = validate_config(c, CONFIG_SCHEMA)
    regions = allele_regions(checked["lesions"], checked["alleles"]["control_region"], cytobands)
    assert any(getattr(r, "chromosome", None) == "chr2" for r in regions)


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda c: c["qc"].update(min_counts="many"), ["qc.min_counts", "'many'", "number"]),
        (lambda c: c.update(lesions=[{"name": "x", "type": "loss", "region": 5.5}]), ["lesions[0].region", "5.5"]),
        (lambda c: c["qc"].update(min_count=3), ["qc", "'min_count'", "did you mean 'min_counts'"]),
        (lambda c: c["cluster"].update(resolution=-1), ["cluster.resolution", "-1"]),
        (lambda c: c["cluster"].update(integrate=["donor"]), ["cluster.integrate[0]", "'donor'", "patient"]),
        (lambda c: c.pop("populations"), ["'populations' is a required property"]),
        (lambda c: c.update(seed=1.5), ["seed", "1.5"]),
        (lambda c: c["annotation"].update(min_mapped_fraction=2), ["annotation.min_mapped_fraction", "2"]),
        (lambda c: c.update(timepoints=["diagnosis", "diagnosis"]), ["timepoints", "more than once"]),
        (lambda c: c["conditions"].update(reference=["normal"]), ["conditions.reference", "normal"]),
    ],
)
def test_bad_config_is_named(config, change, expected):
    bad = copy.deepcopy(config)
    change(bad)
    with pytest.raises(InputError) as err:
        validate_config(bad, CONFIG_SCHEMA, source="my.yaml")
    message = str(err.value)
    assert message.startswith("my.yaml: ")
    for part in expected:
        assert part in message, message


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            HEADER.replace("timepoint", "timpoint") + "\nS1\tP1\tdiagnosis\tHSC\tMDS\ta.h5\n",
            ["unknown column 'timpoint'", "did you mean 'timepoint'", "missing required column(s) ['timepoint']"],
        ),
        (HEADER.replace("\tcounts", "") + "\nS1\tP1\tdiagnosis\tHSC\tMDS\n", ["missing required column(s) ['counts']"]),
        (
            HEADER + "\nS1\tP1\tdiagnosis\tHSC\tMDS\ta.h5\nS1\tP1\tremission\tHSC\tMDS\tb.h5\n",
            ["line 3 (sample 'S1')", "also on line 2"],
        ),
        (HEADER + "\nS1\tP1\tday30\tHSC\tMDS\ta.h5\n", ["line 2 (sample 'S1')", "'day30'", "diagnosis"]),
        (HEADER + "\nS1\tP1\tdiagnosis\tLSC\tMDS\ta.h5\n", ["'population'", "'LSC'", "HSC"]),
        (HEADER + "\nS1\tP1\tdiagnosis\tHSC\tAML\ta.h5\n", ["'condition'", "'AML'", "MDS"]),
        (HEADER + "\nS 1\tP1\tdiagnosis\tHSC\tMDS\ta.h5\n", ["column 'sample'", "'S 1'"]),
        (HEADER + "\nS1\tP1\tdiagnosis\tHSC\tMDS\ta.h5\textra\n", ["line 2", "7 tab-separated fields", "header has 6"]),
        (HEADER + "\nS1\tP1\tdiagnosis\tHSC\tMDS\tcounts.loom\n", ["cannot tell the format", "counts.loom"]),
        (HEADER + "\nS1\tP1\tdiagnosis\tHSC\tMDS\t\n", ["column 'counts' is empty"]),
        (HEADER + "\n", ["header but no samples"]),
        ("", ["sample sheet is empty"]),
        (HEADER.replace("\t", ",") + "\nS1,P1,diagnosis,HSC,MDS,a.h5\n", ["tab-separated", "comma"]),
        (
            HEADER + "\nS1\tP1\tdiagnosis\tHSC\tMDS\ta.h5\nS2\tP1\t\tHSC\thealthy\tb.h5\n",
            ["patient 'P1'", "reference and disease"],
        ),
        (HEADER + "\nS1\tP1\t\tHSC\tMDS\ta.h5\n", ["'timepoint'", "''"]),
    ],
)
def test_bad_sheet_is_named(tmp_path, config, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(InputError) as err:
        read_sample_sheet(path, SHEET_SCHEMA, config)
    message = str(err.value)
    assert str(path) in message
    for part in expected:
        assert part in message, message


def test_non_utf8_sheet(tmp_path, config):
    path = write(tmp_path, HEADER + "\nS1\tPätient\tdiagnosis\tHSC\tMDS\ta.h5\n", encoding="latin-1")
    with pytest.raises(InputError, match=r"not UTF-8 text \(line 2"):
        read_sample_sheet(path, SHEET_SCHEMA, config)


def test_windows_line_endings_and_comments_are_fine(tmp_path, config):
    text = "# cohort 1\r\n" + HEADER + "\tnote_freetext\r\nS1\tP1\tdiagnosis\tHSC\tMDS\ta.h5\tsorted by AB\r\n"
    sheet = read_sample_sheet(write(tmp_path, text), SHEET_SCHEMA, config)
    assert sheet.loc["S1", "counts"] == "a.h5"
    assert sheet.loc["S1", "format"] == "10x_h5"
    assert sheet.loc["S1", "line"] == 3


def test_missing_and_directory_sheet(tmp_path, config):
    with pytest.raises(InputError, match="does not exist"):
        read_sample_sheet(tmp_path / "nope.tsv", SHEET_SCHEMA, config)
    with pytest.raises(InputError, match="is a directory"):
        read_sample_sheet(tmp_path, SHEET_SCHEMA, config)


@pytest.mark.parametrize(
    "path, fmt",
    [
        ("a.h5ad", "h5ad"),
        ("a.h5", "10x_h5"),
        ("dir/", "10x_mtx"),
        ("filtered_feature_bc_matrix", "10x_mtx"),
        ("a.tsv.gz", "table"),
        ("a.csv", "table"),
        ("a.txt", "table"),
        ("a.loom", ""),
    ],
)
def test_infer_format(path, fmt):
    assert infer_format(path) == fmt


def test_reference_cells_selector():
    import pandas as pd

    from remnant.workflow.config import reference_cells

    sheet = pd.DataFrame(
        {
            "sample": ["a", "b", "c"],
            "patient": ["P1", "P1", "H1"],
            "condition": ["MDS", "MDS", "healthy"],
            "population": ["HSC", "PROG", "CD34"],
            "timepoint": ["remission", "remission", "NA"],
        }
    ).set_index("sample", drop=False)
    assert reference_cells(sheet, None, ["healthy"]).tolist() == [False, False, True]
    sel = reference_cells(sheet, {"population": ["PROG"], "timepoint": ["remission"]}, ["healthy"])
    assert sel.tolist() == [False, True, False]
    with pytest.raises(InputError, match=r"cnv.reference.population.*\['PRO'\] not in the sheet's population"):
        reference_cells(sheet, {"population": ["PRO"]}, ["healthy"])
    with pytest.raises(InputError, match="no sample matches"):
        reference_cells(sheet, {"population": ["HSC"], "condition": ["healthy"]}, ["healthy"])
    with pytest.raises(InputError, match="cannot select reference cells by 'barcode'"):
        reference_cells(sheet, {"barcode": ["x"]}, ["healthy"])


@pytest.mark.parametrize(
    "text, key, lines",
    [
        ("seed: 1\nqc:\n  min_counts: 5\n  max_counts: 10\nqc:\n  min_genes: 3\n", "qc", (2, 5)),  # a second block
        ("qc:\n  min_counts: 5\n  min_counts: 6\n", "qc.min_counts", (2, 3)),
        ("lesions:\n  - {name: a, type: loss, region: 5q, name: b}\n", "lesions[0].name", (2, 2)),
        ('{"seed": 1, "qc": {"min_genes": 3}, "seed": 2}\n', "seed", (1, 1)),  # JSON, as snakemake accepts it
    ],
)
def test_a_key_given_twice_is_an_error_naming_it_and_both_lines(tmp_path, text, key, lines):
    """YAML loaders (snakemake's for --configfile too) keep the last of two equal keys silently."""
    from remnant.workflow.config import check_config_files, main

    path = write(tmp_path, text, name="config.yaml")
    expected = (
        f"{path}: key {key!r} is given twice (line {lines[0]} and line {lines[1]}); YAML keeps only the second, which "
        "would silently replace the first: merge the two into one."
    )
    with pytest.raises(InputError) as err:
        load_yaml(path)
    assert str(err.value) == expected
    with pytest.raises(InputError) as err:
        check_config_files([ROOT / "config/config.yaml", path])
    assert str(err.value) == expected
    assert main([str(path)]) == 1


def test_keys_set_again_by_a_later_config_file_or_merged_are_fine(tmp_path):
    """--configfile A B: B overrides A's keys (snakemake merges them); YAML merge keys are no repeat."""
    from remnant.workflow.config import check_config_files

    first = write(tmp_path, "qc:\n  min_counts: 5\n", name="a.yaml")
    second = write(tmp_path, "qc:\n  min_counts: 6\nbase: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n", name="b.yaml")
    check_config_files([first, second])
    assert load_yaml(second)["other"] == {"x": 1, "y": 2}


@pytest.mark.parametrize(
    "qc, expected",
    [
        (
            {"min_counts": 5000, "max_counts": 1000},
            "qc.min_counts (5000) is above qc.max_counts (1000): no cell could pass QC",
        ),
        ({"min_genes": 300, "max_genes": 200}, "qc.min_genes (300) is above qc.max_genes (200): no cell could pass QC"),
        (
            {"min_genes": 700, "max_counts": 600},
            "qc.min_genes (700) is above qc.max_counts (600): a cell with that many genes",
        ),
    ],
)
def test_crossing_limits_are_named(config, qc, expected):
    bad = copy.deepcopy(config)
    bad["qc"].update(qc)
    with pytest.raises(InputError) as err:
        validate_config(bad, CONFIG_SCHEMA, source="my.yaml")
    assert str(err.value).startswith(f"my.yaml: {expected}") and "null = no limit" in str(err.value)
    bad["qc"].update({k: None for k in qc if k.startswith("max_")})  # null: no upper limit
    validate_config(bad, CONFIG_SCHEMA, source="my.yaml")
