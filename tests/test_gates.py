"""In-silico index-sort gates and their agreement with sort gate and transcriptomic state."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from remnant.errors import InputError
from remnant.sim.cohort import DEFAULT_PARAMS
from remnant.tl.gates import DEFAULT_GATES, DEFAULT_THRESHOLDS, UNGATED, agreement_table, gate_cells, gate_crosstab

HI = {"CD34": 5000.0, "CD38": 2000.0, "CD90": 1000.0, "CD45RA": 1000.0}
LO = {"CD34": 50.0, "CD38": 100.0, "CD90": 60.0, "CD45RA": 60.0}


def cell(**signs):
    return {f"facs_{m}": (HI[m] if s == "+" else LO[m]) if s in "+-" else np.nan for m, s in signs.items()}


def table(rows):
    return pd.DataFrame(rows, index=[f"c{i}" for i in range(len(rows))]).assign(sample="S1")


def test_gate_hierarchy_assigns_each_population():
    cells = table(
        [
            cell(CD34="+", CD38="-", CD90="+", CD45RA="-"),  # HSC
            cell(CD34="+", CD38="-", CD90="-", CD45RA="-"),  # MPP
            cell(CD34="+", CD38="-", CD90="-", CD45RA="+"),  # LMPP
            cell(CD34="+", CD38="+", CD90="-", CD45RA="+"),  # PROG (CD90/CD45RA do not matter)
            cell(CD34="+", CD38="+", CD90="+", CD45RA="-"),  # PROG, not HSC: CD38+
            cell(CD34="-", CD38="-", CD90="+", CD45RA="-"),  # CD34-: nothing matches
            cell(CD34="+", CD38="-", CD90="+", CD45RA="+"),  # CD90+ CD45RA+: no gate in the hierarchy
        ]
    )
    out = gate_cells(table(cells.to_dict("records")))
    assert out["index_gate"].astype(str).tolist() == ["HSC", "MPP", "LMPP", "PROG", "PROG", UNGATED, UNGATED]
    assert list(out["index_gate"].cat.categories) == [*DEFAULT_GATES, UNGATED]
    assert out["facs_CD38_pos"].tolist() == [False, False, False, True, True, False, False]


def test_missing_intensities_give_no_gate_unless_a_known_marker_decides():
    cells = table(
        [
            cell(CD34="n", CD38="n", CD90="n", CD45RA="n"),  # not index-sorted
            cell(CD34="+", CD38="+", CD90="n", CD45RA="n"),  # CD38+ rules out the stem gates: PROG
            cell(CD34="+", CD38="-", CD90="n", CD45RA="-"),  # could be HSC or MPP: undecidable
        ]
    )
    out = gate_cells(cells)
    assert pd.isna(out["index_gate"].iloc[0])
    assert out["index_gate"].iloc[1] == "PROG"
    assert pd.isna(out["index_gate"].iloc[2])
    assert pd.isna(out["facs_CD90_pos"].iloc[1])


def test_threshold_is_inclusive_and_per_sample_thresholds_apply():
    cells = pd.DataFrame(
        {
            "facs_CD34": [1000.0, 1000.0],
            "facs_CD38": [100.0, 100.0],
            "facs_CD90": [300.0, 300.0],
            "facs_CD45RA": [10.0, 10.0],
            "sample": ["A", "B"],
        },
        index=["a", "b"],
    )
    out = gate_cells(cells)  # CD90 == default threshold 300: positive
    assert out["index_gate"].tolist() == ["HSC", "HSC"]
    per_sample = {"A": DEFAULT_THRESHOLDS, "B": {**DEFAULT_THRESHOLDS, "CD90": 500.0}}
    out = gate_cells(cells, thresholds=per_sample)
    assert out["index_gate"].tolist() == ["HSC", "MPP"]


def test_gate_cells_writes_obs_of_anndata():
    cells = table([cell(CD34="+", CD38="-", CD90="+", CD45RA="-"), cell(CD34="+", CD38="+", CD90="-", CD45RA="-")])
    adata = ad.AnnData(X=np.zeros((2, 1), np.float32), obs=cells)
    gate_cells(adata, key_added="gate")
    assert adata.obs["gate"].astype(str).tolist() == ["HSC", "PROG"]
    assert "facs_CD34_pos" in adata.obs


def test_default_thresholds_separate_the_simulators_index_sort_levels():
    """The demo's gates recover the simulated state from simulated intensities (noise as the simulator draws it)."""
    ix = DEFAULT_PARAMS["index_sort"]
    rng = np.random.default_rng(0)
    rows, states = [], []
    for state, level in ix["levels"].items():
        n = 400
        values = {f"facs_{m}": 10 ** (level[m] + rng.normal(0, ix["sdlog10"], n)) for m in ix["markers"]}
        rows.append(pd.DataFrame(values))
        states += [state] * n
    cells = pd.concat(rows, ignore_index=True)
    gate = gate_cells(cells)["index_gate"].astype(str).to_numpy()
    states = np.array(states)
    expected = {"HSC": "HSC", "LMPP": "LMPP"}
    for state in ix["levels"]:
        want = expected.get(state, "PROG")
        agreement = np.mean(gate[states == state] == want)
        assert agreement >= 0.9, f"{state}: only {agreement:.2f} of cells in gate {want}"


def test_agreement_counts_disagreements_per_sample():
    obs = pd.DataFrame(
        {
            "sample": ["S1"] * 5 + ["S2"] * 3,
            "population": ["HSC"] * 5 + ["CD34"] * 3,
            "index_gate": ["HSC", "HSC", "LMPP", np.nan, UNGATED, "HSC", "PROG", np.nan],
            "hspc_state": ["HSC", "GMP", "LMPP", "HSC", "HSC", "HSC", "HSC", "MEP"],
        }
    )
    out = agreement_table(obs).set_index("sample")
    s1 = out.loc["S1"]
    assert (s1["n_cells"], s1["n_index_sorted"], s1["n_ungated"]) == (5, 4, 1)
    # sort vs index: HSC ok, HSC ok, LMPP no, ungated no (NaN not comparable)
    assert (s1["sort_index_n"], s1["sort_index_agree"], s1["sort_index_disagree"]) == (4, 2, 2)
    # index vs state (ungated and missing not comparable): HSC/HSC ok, HSC/GMP->PROG no, LMPP/LMPP ok
    assert (s1["index_state_n"], s1["index_state_disagree"]) == (3, 1)
    # sort vs state: GMP in the HSC sort gate disagrees; LMPP state is not in the HSC sort gate either
    assert (s1["sort_state_n"], s1["sort_state_disagree"]) == (5, 2)
    assert s1["sort_state_disagree_fraction"] == pytest.approx(0.4)
    s2 = out.loc["S2"]  # unsorted CD34: sort comparisons not applicable
    assert s2["sort_index_n"] == 0 and np.isnan(s2["sort_index_disagree_fraction"])
    assert (s2["index_state_n"], s2["index_state_disagree"]) == (2, 1)
    whole = agreement_table(obs, by=())
    assert len(whole) == 1 and whole["n_cells"].iloc[0] == 8


def test_crosstab_counts_every_combination():
    obs = pd.DataFrame({"population": ["HSC", "HSC", "PROG"], "index_gate": ["HSC", np.nan, "PROG"]})
    out = gate_crosstab(obs)
    assert out["n_cells"].sum() == 3
    assert set(zip(out["population"], out["index_gate"])) == {("HSC", "HSC"), ("HSC", "NA"), ("PROG", "PROG")}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"gates": {"HSC": {"CD34": "pos"}}}, r"sign 'pos' must be '\+' or '-'"),
        ({"gates": {}}, "non-empty mapping"),
        ({"gates": {UNGATED: {"CD34": "+"}}}, "reserved"),
        ({"thresholds": {"CD34": 300.0}}, "no threshold for marker 'CD38'"),
        ({"thresholds": {"S9": DEFAULT_THRESHOLDS}}, "no thresholds for sample"),
        ({"thresholds": {**DEFAULT_THRESHOLDS, "CD34": "high"}}, "must be a number"),
        ({"gates": {"X": {"CD7": "+"}}}, "facs_CD7"),
    ],
)
def test_bad_gate_config_names_the_key(kwargs, message):
    cells = table([cell(CD34="+", CD38="-", CD90="+", CD45RA="-")])
    with pytest.raises(InputError, match=message):
        gate_cells(cells, **kwargs)


def test_agreement_needs_its_columns():
    with pytest.raises(InputError, match="hspc_state"):
        agreement_table(pd.DataFrame({"sample": ["a"], "population": ["HSC"]}))


# ---------------------------------------------------------------------------------------------
# workflow glue: config checks against config, sheet and index-sort tables; run_gates
# ---------------------------------------------------------------------------------------------
from remnant.workflow.gate_cells import run_gates  # noqa: E402
from remnant.workflow.persistence_config import (  # noqa: E402
    check_gate_config,
    check_index_sort_markers,
    resolve_gate_config,
)

MARKERS = ["CD34", "CD38", "CD90", "CD45RA"]
POPULATIONS = ["HSC", "PROG", "CD34"]


def sheet(**index_sort):
    return pd.DataFrame({"index_sort": [index_sort.get(s, "") for s in ("A", "B", "C")]}, index=["A", "B", "C"])


def test_resolved_defaults_map_sort_gates_by_name_and_states_into_the_hierarchy():
    resolved = resolve_gate_config(
        {"hierarchy": {"HSC": DEFAULT_GATES["HSC"], "PROG": DEFAULT_GATES["PROG"]}}, POPULATIONS
    )
    assert resolved["sort_gates"] == {"HSC": ["HSC"], "PROG": ["PROG"], "CD34": None}
    assert resolved["state_gates"]["GMP"] == "PROG" and "LMPP" not in resolved["state_gates"]  # no LMPP gate
    assert resolved["thresholds"] == DEFAULT_THRESHOLDS


@pytest.mark.parametrize(
    "block, sheet_kw, where, message",
    [
        (
            {"hierarchy": {"HSC": {"CD34": "+", "CD123": "-"}}},
            {},
            "gates.hierarchy.HSC",
            "marker 'CD123' is not an index-sort column: index_sort.markers lists",
        ),
        ({"hierarchy": {"HSC": {"CD34": "up"}}}, {}, "gates.hierarchy.HSC.CD34", "must be '+' or '-'"),
        (
            {"thresholds": {"CD34": 300, "CD38": 350}},
            {},
            "gates.thresholds",
            "no threshold for marker(s) ['CD90', 'CD45RA']",
        ),
        ({"thresholds": {"CD34": 300, "A": DEFAULT_THRESHOLDS}}, {}, "gates.thresholds", "mixes global"),
        (
            {"thresholds": {"A": DEFAULT_THRESHOLDS}},
            {"A": "a.csv", "B": "b.csv"},
            "gates.thresholds",
            "no thresholds for index-sorted sample(s) ['B']",
        ),
        (
            {"thresholds": {"A": DEFAULT_THRESHOLDS, "C": DEFAULT_THRESHOLDS}},
            {"A": "a.csv"},
            "gates.thresholds",
            "per-sample thresholds for ['C'], which are not index-sorted",
        ),
        ({"thresholds": {"A": {"CD34": 1}}}, {"A": "a.csv"}, "gates.thresholds.A", "no threshold for marker(s)"),
        ({"sort_gates": {"LSC": ["HSC"]}}, {}, "gates.sort_gates", "'LSC' is not a declared population"),
        ({"sort_gates": {"HSC": ["HSC", "CMP"]}}, {}, "gates.sort_gates.HSC", "['CMP'] not gates of gates.hierarchy"),
        ({"state_gates": {"GMP": "GMP"}}, {}, "gates.state_gates", "state 'GMP' maps to 'GMP'"),
    ],
)
def test_gate_config_errors_name_the_file_key_and_value(block, sheet_kw, where, message):
    with pytest.raises(InputError) as err:
        check_gate_config(
            block, index_sort_markers=MARKERS, populations=POPULATIONS, sheet=sheet(**sheet_kw), source="my.yaml"
        )
    text = str(err.value)
    assert text.startswith(f"my.yaml: {where}: ") and message in text, text


def test_per_sample_thresholds_for_every_index_sorted_sample_pass():
    block = {"thresholds": {"A": DEFAULT_THRESHOLDS, "B": {**DEFAULT_THRESHOLDS, "CD90": 500}}}
    resolved = check_gate_config(
        block, index_sort_markers=MARKERS, populations=POPULATIONS, sheet=sheet(A="a.csv", B="b.csv")
    )
    assert resolved["thresholds"]["B"]["CD90"] == 500


def test_index_sort_tables_are_checked_for_every_gate_marker(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("well,CD34,CD38,CD90,CD45RA\nA1,5000,100,900,50\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("well,CD34,CD38,CD45RA\nA1,5000,100,50\n")
    check_index_sort_markers(sheet(A=str(good)), MARKERS, sheet_path="samples.tsv")
    with pytest.raises(InputError) as err:
        check_index_sort_markers(sheet(A=str(good), B=str(bad)), MARKERS, sheet_path="samples.tsv")
    text = str(err.value)
    assert (
        str(bad) in text
        and "marker 'CD90'" in text
        and "sample 'B' of samples.tsv" in text
        and "gates.hierarchy" in text
    )


def cohort_obs(index_sorted=True):
    """Two index-sorted HSC-gate samples and one droplet progenitor sample."""
    rows = [
        ("S1", "HSC", "HSC", dict(CD34="+", CD38="-", CD90="+", CD45RA="-")),
        ("S1", "HSC", "HSC", dict(CD34="+", CD38="-", CD90="+", CD45RA="-")),
        (
            "S1",
            "HSC",
            "LMPP",
            dict(CD34="+", CD38="-", CD90="-", CD45RA="+"),
        ),  # index gate LMPP: disagrees with sort gate
        ("S1", "HSC", "GMP", dict(CD34="+", CD38="-", CD90="+", CD45RA="-")),  # state GMP -> PROG: disagrees with index
        ("S1", "HSC", "HSC", dict(CD34="-", CD38="-", CD90="+", CD45RA="-")),  # CD34-: ungated
        ("S2", "PROG", "MEP", dict(CD34="n", CD38="n", CD90="n", CD45RA="n")),  # droplet: no index-sort
        ("S2", "PROG", "HSC", dict(CD34="n", CD38="n", CD90="n", CD45RA="n")),
    ]
    records = []
    for sample, pop, state, signs in rows:
        record = {
            "sample": sample,
            "patient": "P1",
            "timepoint": "diagnosis",
            "population": pop,
            "hspc_state": state,
            "condition": "MDS",
            "technology": "plate" if sample == "S1" else "droplet",
        }
        if index_sorted:
            record.update(cell(**signs))
        records.append(record)
    return pd.DataFrame(records, index=[f"c{i}" for i in range(len(records))])


def test_run_gates_counts_three_way_agreement_and_says_what_was_not_compared():
    out = run_gates(cohort_obs(), sort_gates={"HSC": ["HSC"], "PROG": ["PROG"]})
    cells = out["cells"]
    assert cells["index_gate"].astype(object).tolist()[:5] == ["HSC", "HSC", "LMPP", "HSC", UNGATED]
    assert cells["index_gate"].iloc[5:].isna().all() and cells["state_gate"].tolist()[5:] == ["PROG", "HSC"]
    agreement = out["agreement"].set_index("sample")
    s1, s2, whole = agreement.loc["S1"], agreement.loc["S2"], agreement.loc["all"]
    assert (s1["n_index_sorted"], s1["n_ungated"], s1["sort_index_n"], s1["sort_index_disagree"]) == (5, 1, 5, 2)
    assert (s1["index_state_n"], s1["index_state_disagree"]) == (4, 1)
    assert s1["note"] == "" and s2["note"] == "sample not index-sorted: no index gate"
    assert (s2["sort_state_n"], s2["sort_state_disagree"]) == (2, 1)
    assert (
        whole["n_cells"] == 7 and whole["sort_state_disagree"] == s1["sort_state_disagree"] + s2["sort_state_disagree"]
    )
    assert s1["technology"] == "plate" and s2["population"] == "PROG"
    tab = out["crosstab"]
    for (a, b), part in tab.groupby(["assignment_1", "assignment_2"]):
        assert part["n_cells"].sum() == 7, (a, b)


def test_run_gates_without_index_sort_data_states_it():
    out = run_gates(cohort_obs(index_sorted=False))
    assert not out["index_sorted"] and out["cells"]["index_gate"].isna().all()
    assert out["agreement"]["note"].str.contains("no index-sort intensities in the cohort").all()
    assert (out["agreement"]["sort_index_n"] == 0).all() and out["agreement"]["sort_state_n"].sum() == 2 * 7
    unmapped = run_gates(cohort_obs(), state_gates={"HSC": "HSC"})
    assert (
        "index-gated cell(s) in a state gates.state_gates does not map"
        in unmapped["agreement"].set_index("sample").loc["S1", "note"]
    )


def test_run_gates_names_a_gate_marker_the_cohort_lacks():
    obs = cohort_obs().drop(columns="facs_CD90")
    with pytest.raises(InputError) as err:
        run_gates(obs, source="results/cohort/cohort.h5ad")
    assert "results/cohort/cohort.h5ad" in str(err.value) and "gate marker 'CD90'" in str(err.value)
