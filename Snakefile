# remnant: find the malignant stem cells that survive therapy.
# Thin entry point: the stages live in rules/, the logic in src/remnant/. See README.md.
from snakemake.utils import min_version

min_version("9.10")


# In this checkout the demo (config/demo/config.yaml over the template), so that `snakemake` and
# `snakemake --lint` run here; in a cohort's working directory neither file exists and the cohort's
# own --configfile is read alone. The demo's simulator refuses a sheet that names files, so a
# config given here with --configfile that leaves out `demo:` can never write over data.
configfile: "config/config.yaml"
configfile: "config/demo/config.yaml"


include: "rules/common.smk"
include: "rules/demo.smk"
include: "rules/qc.smk"
include: "rules/alleles.smk"
include: "rules/cluster.smk"
include: "rules/cnv.smk"
include: "rules/persistence.smk"
include: "rules/warnings.smk"
include: "rules/report.smk"


# No path the user gave (sheet, config, resources) may be an output of any rule above.
check_user_files()


# The report's first page: this run's front page once rule write_front_page has written it (the
# answer in numbers and words), else the workflow description.
report: report_description()


rule all:
    default_target: True
    input:
        get_final_output(),
