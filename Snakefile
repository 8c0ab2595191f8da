# remnant: find the malignant stem cells that survive therapy.
# Thin entry point: the stages live in rules/, the logic in src/remnant/. See README.md.
from snakemake.utils import min_version

min_version("9.10")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/demo.smk"
include: "rules/qc.smk"
include: "rules/cluster.smk"
include: "rules/cnv.smk"
include: "rules/persistence.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
