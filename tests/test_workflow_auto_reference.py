"""The workflow with an automatic reference (cnv.reference: auto) on the test cohort, against truth.

Every cell of the cohort is a candidate (the healthy donor's too, unlabelled): the workflow must
find the normal cells itself, call del(5q) as well as with the configured reference, and say in
results/cnv/reference.tsv how confident the choice is.
"""

import numpy as np
import pandas as pd
import pytest
import yaml
from test_lesions import auroc
from test_workflow import new_workdir, snakemake


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory):
    workdir = new_workdir(tmp_path_factory, "auto_reference")
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config.setdefault("cnv", {})["reference"] = "auto"
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    snakemake(workdir, "results/cnv/reference.tsv", "results/cnv/lesion_calls.tsv.gz")
    return workdir


def test_reference_report_is_confident_and_honest(auto_run):
    choice = pd.read_csv(auto_run / "results/cnv/reference.tsv", sep="\t")
    assert set(choice["mode"]) == {"auto"}
    assert set(choice["batch"]) == {"droplet", "plate"}
    assert choice["confident"].all(), choice["reason"].tolist()
    calls = pd.read_csv(auto_run / "results/cnv/lesion_calls.tsv.gz", sep="\t")
    assert int(calls["reference"].sum()) == int(choice["n_chosen"].sum())
    log = (auto_run / "logs/call_lesions/call_lesions.log").read_text()
    assert "automatic reference, del5q, batch droplet" in log
    # the depth, read before the choice, is scaled to it afterwards as a configured reference's is
    assert "depth of sample" in log and "scaled by" in log


def test_calls_against_truth(auto_run):
    calls = pd.read_csv(auto_run / "results/cnv/lesion_calls.tsv.gz", sep="\t")
    truth = pd.read_csv(auto_run / "results/demo/truth/cells.tsv.gz", sep="\t")
    truth.index = truth["sample"] + ":" + truth["barcode"]
    carrier = truth.loc[calls["cell"], "lesion_del5q"].to_numpy(bool)
    post = calls["del5q_posterior"].to_numpy()
    assert carrier[calls["reference"].to_numpy(bool)].mean() < 0.05  # the chosen cells are normal
    assert auroc(post, carrier) >= 0.99
    assert (post[~carrier] >= 0.9).mean() <= 0.01  # over all normal cells, chosen or not
    per_sample = pd.DataFrame({"sample": calls["sample"], "est": post, "true": carrier}).groupby("sample").mean()
    assert np.abs(per_sample["est"] - per_sample["true"]).max() < 0.05
