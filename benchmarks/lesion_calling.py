"""Benchmark of per-cell lesion calls (remnant.tl.lesions) on simulated cohorts with known truth.

Run by hand:  .venv/bin/python benchmarks/lesion_calling.py [--quick] [--infercnv] [--cells N]
                  [--seeds S ...] [--depths D ...] [--clones F ...] [--confounders both|on|off] [--ablate]
                  [--cluster-null both|on|off]

For each droplet depth (median UMI/cell) and clone fraction it simulates one cohort, by default twice:
without and with the simulator's confounders (remnant.sim.confounders, on by default in the
simulator: a disease programme of 300 genes 4-16-fold up or down in every patient cell, haemoglobin
holding 20-60% of the counts of 15% of patient cells, immediate-early genes varying by sample, 5% of
patient cells of another type, state OTHER, which the reference lacks), and prints the two side by
side at the end (``_off`` / ``_on``; ``called_noncarrier``: non-carrier HSPC cells of the patients
called, ``called_other_type``: other-type cells called). ``--ablate`` runs each confounder alone at
2,000 UMI and clone fraction 50%.
- 3 healthy donors (2 CD34 samples each): one sample per donor is the reference, the other sample
  of each donor is held-out healthy cells NOT in the reference (false-positive rate);
- 2 MDS patients (a CD34 sample at the given clone fraction each), with patient-specific
  del(5q) breakpoints drawn by the simulator.
The annotated state is the TRUE simulated state (clustering is benchmarked elsewhere); doublets and
low-quality cells are left out (QC removes them upstream).

Printed per row: per-cell AUROC of the posterior on MDS cells (truth: lesion_del5q), FPR on
held-out healthy cells at the default cut-off with their own sample's learned prior, FPR of the
same cells at a fixed prior of 0.5 (a harsher check: LLR >= logit(0.9)), sensitivity on carriers,
precision, the estimated per-sample FPR/FNR, runtime of call_lesions; with --infercnv the AUROC of a
5q score from infercnvpy.tl.infercnv (mean smoothed CNV value over the del(5q) interval, negated) and
its runtime on the same cells. Then the posteriors' calibration on the patients' HSPC cells
(:func:`calibration`: mean posterior against the true fraction, expected calibration error, and the
carrier share of the undecided cells at posterior 0.5-0.9).

With and without confounders (600 cells per sample; the oracle knows the true interval but not
the programme). Seed 0, every depth:

    depth clone  auroc off/on    vs_held off/on   oracle off/on    sens off/on     other-type called
      500  0.01  0.781 / 0.730   0.822 / 0.778    0.848 / 0.817    0.000 / 0.000   0.000
      500  0.10  0.816 / 0.842   0.844 / 0.864    0.870 / 0.875    0.008 / 0.035   0.000
      500  0.50  0.856 / 0.842   0.864 / 0.859    0.870 / 0.881    0.205 / 0.139   0.000
      500  1.00    nan / 0.845   0.885 / 0.890    0.875 / 0.882    0.984 / 0.951   0.604
     2000  0.01  0.990 / 0.951   0.989 / 0.957    0.992 / 0.969    0.083 / 0.000   0.000
     2000  0.10  0.969 / 0.971   0.973 / 0.976    0.987 / 0.986    0.358 / 0.217   0.000
     2000  0.50  0.982 / 0.976   0.986 / 0.984    0.986 / 0.984    0.723 / 0.671   0.038
     2000  1.00    nan / 0.982   0.987 / 0.987    0.985 / 0.981    0.999 / 0.961   0.132
    10000  0.01  1.000 / 1.000   1.000 / 1.000    1.000 / 1.000    0.833 / 0.500   0.000
    10000  0.10  1.000 / 0.998   1.000 / 0.999    1.000 / 1.000    0.975 / 0.696   0.000
    10000  0.50  1.000 / 1.000   1.000 / 1.000    1.000 / 1.000    0.978 / 0.963   0.000
    10000  1.00    nan / 1.000   1.000 / 1.000    1.000 / 1.000    1.000 / 0.999   0.038

``--quick --seeds 1 2 3`` (2,000 UMI): AUROC on patient cells off -> on 0.979/0.979/0.991 ->
0.913/0.984/0.953 at clone 1%, 0.963/0.979/0.979 -> 0.953/0.974/0.976 at 10%, 0.977/0.986/0.984 ->
0.962/0.963/0.968 at 50%; vs held-out at 50% 0.982/0.987/0.983 -> 0.977/0.966/0.975 (oracle
0.979/0.986/0.982 -> 0.975/0.967/0.976); sensitivity at 50% 0.69/0.78/0.73 -> 0.59/0.58/0.63; at
clone 100% 6.5-18% of the other-type cells are called (the sample's prior, near 1, sweeps them).
Held-out healthy cells called: <= 0.06% everywhere, with or without; non-carrier HSPC cells of the
patients <= 1.5%. (At clone 1.0 the other-type cells are the only non-carriers, hence an AUROC
with confounders only.)

The tables above were measured with the caller before carrier priors per cluster and the
outlier-robust evidence (main at ea853ef). With them (main at 2eb5181), ``--quick --seeds 0 1 2``:
AUROC on patient cells off -> on 0.985/0.965/0.986 -> 0.944/0.890/0.982 at clone 1%,
0.967/0.964/0.980 -> 0.969/0.953/0.974 at 10%, 0.982/0.976/0.985 -> 0.978/0.964/0.968 at 50%;
sensitivity at 50% 0.75/0.70/0.78 -> 0.69/0.64/0.61; other-type cells called at clone 100%
0/0/2.2% (was 13% for seed 0: the prior of their cluster no longer sweeps them).

Ablation (``--ablate``, 2,000 UMI, clone 50%, seeds 0-3; AUROC on patient cells): none
0.982/0.977/0.986/0.984; programme 0.977/0.970/0.975/0.987; haemoglobin 0.979/0.976/0.975/0.981;
immediate-early 0.983/0.981/0.986/0.986; other type 0.982/0.976/0.985/0.988 (0-2.2% of them
called); all 0.976/0.962/0.963/0.968 (sensitivity 0.67/0.59/0.58/0.63 against 0.72/0.69/0.78/0.73);
all with an adversarial programme (40 genes inside 5q, all down 4-16-fold) 0.966/0.948/0.969/0.968
with 7-16% of the non-carriers and 4-21% of the other-type cells called. What a programme costs
depends on which of its genes fall inside the patient's interval: with an earlier candidate pool
(markers and cycle genes allowed) seed 0's programme alone took the AUROC to 0.885 and the oracle
to 0.931. The oracle too loses up to 0.02-0.03 with the confounders: it weighs every gene of the
interval by the count model and knows nothing of the programme.

The oracle given the interval, beside remnant, with the confounders (main after the outlier-robust
evidence and per-cluster priors; ``--quick --seeds 0 1 2``; AUROC of patient + held-out healthy
cells, ``auroc_vs_held_on`` / ``oracle_auroc_vs_held_on`` / ``dropped_auroc_vs_held_on``):

    clone   seed 0                  seed 1                  seed 2
    0.01    0.954 / 0.967 / 0.957   0.967 / 0.976 / 0.973   0.983 / 0.984 / 0.983
    0.10    0.975 / 0.985 / 0.981   0.965 / 0.977 / 0.974   0.970 / 0.973 / 0.966
    0.50    0.984 / 0.983 / 0.978   0.977 / 0.976 / 0.970   0.971 / 0.969 / 0.974
    1.00    0.986 / 0.980 / 0.975   0.984 / 0.980 / 0.975   0.974 / 0.971 / 0.976

remnant is within 0.013 of the interval oracle everywhere and at or above it from clone 50% (it
learns the patient's interval and the clone's share); the gap is at 1-10%, where few cells are
called for the interval to be refined on. ``dropped`` (the interval oracle without the genes
the confounders move) is below the oracle in 10 of 12: the outlier-robust evidence already takes
from those genes what copy number they still carry. Without confounders (same runs) remnant /
oracle at 50%: 0.986/0.986, 0.981/0.978, 0.987/0.986.

The oracle given the interval AND the programme (issue 17: "per-cell LLR AUROC within 0.01 of the
oracle (the model given the true interval and programme)"; :func:`programme_oracle`): per patient,
call_lesions on its TRUE interval (no refinement) against the reference donors' cells simulated
again with the patient's disease programme, by the simulator's own per-sample draw
(:func:`reference_with_programme`; with a zero programme it gives the reference's counts exactly,
checked for seed 0), so the state profiles it learns hold the programme's folds. Held-out healthy
cells lack the programme, so remnant and both oracles are compared on each patient's own cells
(carriers against all its non-carriers, other-type cells included; per-cell LLR; averaged over the
2 patients; ``auroc_patient`` / ``oracle_auroc_patient`` / ``programme_auroc_patient``,
``gap_programme`` = remnant minus the programme oracle; ``refined``: patients remnant re-scored on an
interval of its own). ``--quick --seeds 0 1 2 3 4 5`` (2,000 UMI, 600 cells per sample; at clone 100%
without confounders every patient cell is a carrier: no AUROC):

    clone seed   off: remnant / interval / programme    gap     on: remnant / interval / programme    gap   refined
    0.01  0        0.988 / 0.992 / 0.992   -0.004        0.947 / 0.964 / 0.964   -0.017   0/0
    0.01  1        0.980 / 0.988 / 0.989   -0.009        0.966 / 0.974 / 0.977   -0.011   0/0
    0.01  2        0.981 / 0.984 / 0.984   -0.003        0.986 / 0.991 / 0.991   -0.005   0/0
    0.01  3        0.989 / 0.991 / 0.991   -0.001        0.957 / 0.962 / 0.957   -0.001   0/0
    0.01  4        0.995 / 0.996 / 0.996   -0.001        0.988 / 0.997 / 0.999   -0.011   0/0
    0.01  5        0.976 / 0.992 / 0.992   -0.015        0.966 / 0.983 / 0.985   -0.019   0/0
    0.10  0        0.969 / 0.985 / 0.985   -0.016        0.971 / 0.984 / 0.985   -0.014   0/0
    0.10  1        0.964 / 0.975 / 0.975   -0.010        0.957 / 0.972 / 0.974   -0.017   0/0
    0.10  2        0.979 / 0.983 / 0.983   -0.004        0.977 / 0.980 / 0.980   -0.003   0/0
    0.10  3        0.976 / 0.980 / 0.980   -0.003        0.978 / 0.979 / 0.979   -0.001   0/0
    0.10  4        0.981 / 0.985 / 0.985   -0.003        0.964 / 0.975 / 0.989   -0.025   1/0
    0.10  5        0.978 / 0.987 / 0.987   -0.008        0.980 / 0.987 / 0.988   -0.008   0/0
    0.50  0        0.983 / 0.983 / 0.984   -0.001        0.977 / 0.982 / 0.981   -0.004   2/2
    0.50  1        0.976 / 0.976 / 0.976   -0.000        0.962 / 0.967 / 0.969   -0.006   2/2
    0.50  2        0.986 / 0.987 / 0.987   -0.001        0.978 / 0.979 / 0.981   -0.002   2/2
    0.50  3        0.984 / 0.984 / 0.983   +0.000        0.970 / 0.970 / 0.970   +0.000   2/2
    0.50  4        0.984 / 0.984 / 0.984   -0.000        0.967 / 0.970 / 0.983   -0.017   2/2
    0.50  5        0.987 / 0.988 / 0.988   -0.001        0.988 / 0.990 / 0.991   -0.003   2/2
    1.00  0          nan /   nan /   nan       nan        0.982 / 0.982 / 0.984   -0.001   2/2
    1.00  1          nan /   nan /   nan       nan        0.983 / 0.981 / 0.982   +0.002   2/2
    1.00  2          nan /   nan /   nan       nan        0.978 / 0.977 / 0.979   -0.001   2/2
    1.00  3          nan /   nan /   nan       nan        0.969 / 0.970 / 0.970   -0.001   2/2
    1.00  4          nan /   nan /   nan       nan        0.966 / 0.967 / 0.978   -0.012   2/2
    1.00  5          nan /   nan /   nan       nan        0.992 / 0.994 / 0.994   -0.002   2/2

(Seeds 0-2 are ``--quick --seeds 0 1 2``; rerun with 3-5 added they came out the same to the last
digit.) Reading: remnant is NOT within 0.01 of the programme oracle everywhere. With the confounders
the gap exceeds 0.01 in 9 of 24 runs: at clone 1% (seeds 0, 1, 4, 5: 0.011-0.019) and 10% (seeds 0,
1, 4: 0.014-0.025), where no patient's interval is refined (too few cells called) and remnant scores
the configured del(5q), wider than the patient's; and for seed 4 at every clone fraction (0.017 at
50%, 0.012 at 100%, with both patients refined). Without the confounders it exceeds 0.01 in 3 of 18
(1% seed 5: 0.015; 10% seeds 0, 1: 0.016, 0.010), all unrefined, and is <= 0.001 at 50%. Mean gap
with / without: 0.011 / 0.006 at 1%, 0.011 / 0.008 at 10%, 0.005 / 0.0003 at 50%, 0.0025 at 100%.
Knowing the programme moves the interval oracle by -0.005 to +0.003 (a new draw of the reference)
except for seed 4 (+0.014, +0.013, +0.011 at 10%, 50%, 100%): its patient P1 has 12 programme genes
inside its interval (11 up 4-16-fold), holding 10% of the interval's reference counts (0.4-5% for
the other patients and seeds): the oracle expects their folds and reads their copy number; remnant's
reference lacks the programme, and its outlier-robust evidence only bounds what those genes can do
to a call. So remnant's shortfall has two sources: the interval at low clone fractions (present
without confounders too) and, for a programme that puts strongly expressed genes inside the lesion,
the programme. Without confounders the two oracles differ by <= 0.0004: the interval oracle's call
also holds the held-out samples, whose most-expressed genes the depth leaves out too.

Session 14, two changes to the caller, ``--quick --seeds 0 1 2`` again (the table above is before
both): cells of a state the reference lacks (here the other-type cells) get the level uncertainty
``unmatched_level_sd`` (0.1): no number in the table moved by more than 0.001 and other-type cells
called stayed 0; and each patient's interval is fitted to its cells weighted by their posteriors
(at least 30 expected carriers) instead of to its called cells (at least 30). Per row: remnant's
AUROC on the patient's cells (gap to the programme oracle, patients refined) before -> after the
weighting, the programme oracle, sensitivity, held-out healthy called:

    clone seed conf.  before                after                 programme  sens          held-out
    0.01  0  off   0.988 (-0.004, 0)   0.988 (-0.004, 0)   0.992   0.33 -> 0.33   0.0000 -> 0.0000
    0.01  0  on    0.947 (-0.018, 0)   0.947 (-0.018, 0)   0.964   0.00 -> 0.00   0.0000 -> 0.0000
    0.01  1  off   0.980 (-0.009, 0)   0.980 (-0.009, 0)   0.989   0.08 -> 0.08   0.0000 -> 0.0000
    0.01  1  on    0.966 (-0.011, 0)   0.966 (-0.011, 0)   0.977   0.09 -> 0.09   0.0000 -> 0.0000
    0.01  2  off   0.981 (-0.003, 0)   0.981 (-0.003, 0)   0.984   0.17 -> 0.17   0.0006 -> 0.0006
    0.01  2  on    0.986 (-0.005, 0)   0.986 (-0.005, 0)   0.991   0.17 -> 0.17   0.0000 -> 0.0000
    0.10  0  off   0.969 (-0.016, 0)   0.977 (-0.008, 2)   0.985   0.36 -> 0.47   0.0000 -> 0.0000
    0.10  0  on    0.971 (-0.014, 0)   0.981 (-0.004, 2)   0.985   0.21 -> 0.38   0.0000 -> 0.0000
    0.10  1  off   0.964 (-0.010, 0)   0.973 (-0.002, 2)   0.975   0.31 -> 0.42   0.0000 -> 0.0000
    0.10  1  on    0.957 (-0.017, 0)   0.965 (-0.008, 2)   0.974   0.23 -> 0.34   0.0000 -> 0.0000
    0.10  2  off   0.979 (-0.004, 0)   0.982 (-0.001, 2)   0.983   0.38 -> 0.39   0.0006 -> 0.0006
    0.10  2  on    0.977 (-0.003, 0)   0.979 (-0.001, 1)   0.980   0.24 -> 0.28   0.0000 -> 0.0000
    0.50  0  off   0.983 (-0.001, 2)   0.983 (-0.000, 2)   0.984   0.75 -> 0.75   0.0000 -> 0.0000
    0.50  0  on    0.977 (-0.004, 2)   0.979 (-0.003, 2)   0.982   0.69 -> 0.70   0.0000 -> 0.0000
    0.50  1  off   0.976 (-0.000, 2)   0.976 (+0.000, 2)   0.976   0.70 -> 0.70   0.0000 -> 0.0000
    0.50  1  on    0.963 (-0.006, 2)   0.963 (-0.006, 2)   0.969   0.64 -> 0.64   0.0000 -> 0.0000
    0.50  2  off   0.986 (-0.001, 2)   0.986 (-0.001, 2)   0.987   0.78 -> 0.78   0.0006 -> 0.0006
    0.50  2  on    0.978 (-0.003, 2)   0.978 (-0.003, 2)   0.981   0.60 -> 0.61   0.0000 -> 0.0000
    1.00  0  on    0.983 (-0.000, 2)   0.983 (-0.000, 2)   0.983   1.00 -> 1.00   0.0000 -> 0.0000
    1.00  1  on    0.982 (+0.001, 2)   0.982 (+0.001, 2)   0.981   0.99 -> 0.99   0.0000 -> 0.0000
    1.00  2  on    0.976 (-0.002, 2)   0.976 (-0.002, 2)   0.978   0.95 -> 0.95   0.0000 -> 0.0000

At clone 10% every patient is now refined (5 of 6 runs: both) and every gap is within 0.01 (it was
0.010-0.017 in 4 of 6), with sensitivity up by 0.01-0.17 and no held-out healthy cell more called.
What is left beyond 0.01 is clone 1% (two runs with confounders: 0.018, 0.011): about 6 carriers of
600 cells, 0.3-6 expected carriers, too few to place the patient's breakpoints (the 15-35% of the
configured region outside the true interval holds some 50-100 counts over all carriers together),
and seed 4's programme: ``--quick --seeds 3 4 5`` after the weighting, with confounders, seed 4 is
0.019 / 0.014 / 0.013 short at clone 10% / 50% / 100% (its patient's 12 strongly expressed programme
genes inside the interval), seeds 3 and 5 within 0.004 from 10% up; at 1% seed 4 0.011 and seed 5
0.020 (0.015 without confounders). Over seeds 0-5 with confounders: 17 of 18 runs within 0.01 from
clone 10% up, 2 of 6 at 1%.

Session 15: what is left at clone 1% is the interval. The programme oracle given only the configured
region (``programme_config_auroc_patient``, ``gap_config``: the same reference with the programme, the
region remnant scores when no patient interval can be fitted), ``--quick --clones 0.01 --seeds 0 1 2 3 4
5 --confounders on``:

    seed  remnant  oracle (true interval)  gap     oracle (configured region)  gap
       0   0.9465   0.9642                 -0.018   0.9487                     -0.002
       1   0.9659   0.9774                 -0.012   0.9693                     -0.004
       2   0.9864   0.9914                 -0.005   0.9860                     +0.000
       3   0.9565   0.9574                 -0.001   0.9545                     +0.002
       4   0.9883   0.9994                 -0.011   0.9989                     -0.011
       5   0.9656   0.9851                 -0.020   0.9739                     -0.008

Given the region it is told, remnant is within 0.01 of the oracle in 5 of 6 (seed 4: its programme genes
inside the interval, as above); the rest of the gap to the true-interval oracle is the patient's interval,
which ~6 carriers among 600 cells (no patient refined) cannot place.

Also printed: ``auroc_patient``, ``oracle_auroc_patient``, ``programme_auroc_patient``,
``gap_programme`` and ``refined`` (above; a last table of them, and ``--json PATH`` writes every row
with all columns); ``lesion_share``, the share of nuclear counts of reference cells on the lesion's genes
(how much the data can tell), and ``oracle_auroc_vs_held``: call_lesions on each patient's TRUE
deleted interval (no refinement), AUROC of its cells against the held-out healthy cells, averaged
over patients: the best a count likelihood can do against the same reference.

Measured on this machine (2 cores), ``--seeds 0 1 2`` (each seed is also a new gene model), 600
cells per sample (4,800 cells: 1,800 reference, 1,800 held-out healthy, 1,200 MDS), each depth x
clone fraction 1%, 10%, 50%, 100% (12 cohorts per depth); summary per depth:

    depth  lesion_share  auroc_vs_held min/mean/max   oracle min/mean/max    fpr_held max
      500         0.022  0.814 / 0.852 / 0.894        0.821 / 0.863 / 0.893        0.0006
     2000         0.022  0.966 / 0.982 / 0.990        0.977 / 0.984 / 0.992        0
    10000         0.022  0.9997 / 0.9999 / 1.0        0.9997 / 0.9999 / 1.0        0

Reading: remnant performs at the oracle's level: within 0.002 of the oracle on
average at 2,000 UMI and 0.011 at 500 (the gap is at clone fractions of 1-10%, where too few cells
are called for the patient's own interval to be estimated; at 50-100% remnant matches or beats
the oracle). The issue's targets (AUROC >= 0.99 at 2,000 UMI, >= 0.95 at 500) are above that
oracle: it reaches 0.98-0.99 and 0.82-0.89. Even a Poisson count with no overdispersion and
the whole region deleted separates 11 from 5.5 expected counts with an AUROC of only about 0.91.
The lesion holds 2.1-2.3% of a cell's
counts here (about 11 counts per normal cell at 500 UMI, 5.5 after a one-copy loss), close to
real data: 2.1-3.2% of the counts of the normal cells of the oligodendroglioma Smart-seq2 set
(oligodendrocytes, microglia) fall in 5q13.1-5q33.3 (mitochondrial pseudogenes excluded). FPR on
held-out healthy cells at the default cut-off is <= 0.06% everywhere (<= 2.2% with a 50% prior).
With ``--infercnv`` (session 2, seed 0), infercnvpy's 5q score reached 0.66-0.79 at 500 UMI, 0.92
at 2,000 and 0.998-0.9997 at 10,000 on the same cells.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from remnant.io.annotation import chromosome_arms, load_cytobands, load_genes  # noqa: E402
from remnant.io.counts import map_genes  # noqa: E402
from remnant.io.genesets import read_gene_sets  # noqa: E402
from remnant.pp.cluster import read_markers  # noqa: E402
from remnant.sim.cohort import simulate_cohort  # noqa: E402
from remnant.sim.confounders import Confounders  # noqa: E402
from remnant.sim.model import GeneModel, Patient, child_rng  # noqa: E402
from remnant.sim.params import is_index_sorted, resolve_params  # noqa: E402
from remnant.sim.sample import simulate_sample  # noqa: E402
from remnant.tl.lesions import call_lesions, parse_lesions  # noqa: E402


def auroc(score: np.ndarray, truth: np.ndarray) -> float:
    from scipy.stats import rankdata

    truth = np.asarray(truth, bool)
    npos, nneg = truth.sum(), (~truth).sum()
    if npos == 0 or nneg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[truth].sum() - npos * (npos + 1) / 2) / (npos * nneg))


#: bootstrap draws of :func:`paired_gap_se`
GAP_DRAWS = 200


def paired_gap_se(a: np.ndarray, b: np.ndarray, truth: np.ndarray, seed: int = 0) -> float:
    """Standard error of ``auroc(a) - auroc(b)`` on the same cells (two scores of one truth): the cells drawn
    again with replacement, carriers and non-carriers apart (their numbers fixed), :data:`GAP_DRAWS` times. With a
    dozen carriers (a 1% clone of 1,200 cells) it is about 0.01: a gap that small is not resolved."""
    truth = np.asarray(truth, bool)
    pos, neg = np.flatnonzero(truth), np.flatnonzero(~truth)
    if pos.size < 2 or neg.size < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    gaps = []
    for _ in range(GAP_DRAWS):
        i = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        gaps.append(auroc(a[i], truth[i]) - auroc(b[i], truth[i]))
    return float(np.std(gaps, ddof=1))


def sim_params(depth: float, clone_fraction: float, cells: int, confounders=True) -> dict:
    """The simulator's parameters of the benchmark cohorts: droplet cells of one depth, the diagnosis
    samples at one clone fraction (exactly), no low-quality cells or doublets."""
    return {
        "cells_per_sample": {"droplet": cells},
        "library_size": {"droplet": {"median": float(depth), "sdlog": 0.35}},
        "clone_fraction": {"diagnosis": {"CD34": clone_fraction}},
        "clone_sampling": "exact",
        "low_quality": {"fraction": 0.0},
        "doublets": {"rate": 0.0},
        "confounders": confounders if isinstance(confounders, dict) else {"enabled": bool(confounders)},
    }


def cohort_inputs(depth: float, clone_fraction: float, cells: int, n_mds: int = 2, confounders=True) -> dict:
    """What :func:`simulate_cohort` is given for a benchmark cohort (all but the seed): ``sheet`` (3 healthy
    donors, a reference and a held-out sample each; ``n_mds`` patients), ``genes``, ``markers``,
    ``gene_sets`` and ``params``; ``confounders``: True/False, or the simulator's ``confounders`` block."""
    rows = []
    for h in range(1, 4):
        rows.append((f"H{h}_ref", f"H{h}", "", "CD34", "healthy", "droplet"))
        rows.append((f"H{h}_held", f"H{h}", "", "CD34", "healthy", "droplet"))
    for p in range(1, n_mds + 1):
        rows.append((f"P{p}_CD34", f"P{p}", "diagnosis", "CD34", "MDS", "droplet"))
    return {
        "samples": pd.DataFrame(rows, columns=list(SHEET)),
        "genes": load_genes(ROOT / "resources/annotation/GRCh38_genes.tsv.gz"),
        "markers": read_markers(ROOT / "resources/gene_sets/HSPC_MARKERS.tsv"),
        "gene_sets": read_gene_sets(ROOT / "resources/gene_sets"),
        "params": sim_params(depth, clone_fraction, cells, confounders),
    }


#: The sample sheet's columns, copied to obs.
SHEET = ("sample", "patient", "timepoint", "population", "condition", "technology")


def sample_adata(counts: ad.AnnData, row: pd.Series, genes: pd.DataFrame, truth: pd.DataFrame) -> ad.AnnData:
    """One simulated sample as the benchmark holds it: genes mapped to the annotation, the sheet's
    columns, ``sample:barcode`` names, the TRUE state, lesion and other-type flags (``truth``: the
    simulator's truth rows, indexed by barcode) and the counts in ``layers["counts"]``."""
    a, _ = map_genes(counts, genes, source=row["sample"])
    for key in SHEET:
        a.obs[key] = row[key]
    t = truth.loc[a.obs_names]
    a.obs["hspc_state"] = t["state"].to_numpy()
    a.obs["truth"] = t["lesion_del5q"].to_numpy(bool)
    a.obs["other_type"] = t["other_type"].to_numpy(bool)
    a.obs_names = [f"{row['sample']}:{b}" for b in a.obs_names]
    a.layers["counts"] = a.X.tocsr()
    return a


def build(inputs: dict, seed: int):
    """The cohort (one AnnData) of :func:`cohort_inputs` ``inputs`` and ``seed``."""
    sim = simulate_cohort(**inputs, seed=seed)
    truth = sim.cells.set_index("barcode")
    parts = []
    for _, row in inputs["samples"].iterrows():
        t = truth[sim.cells["sample"].to_numpy() == row["sample"]]
        parts.append(sample_adata(sim.counts[row["sample"]], row, inputs["genes"], t))
    adata = ad.concat(parts, merge="same")
    adata.uns["truth_patients"] = sim.patients.astype(str)
    adata.var["confounded"] = adata.var["gene_name"].astype(str).isin(confounded_genes(sim))
    return adata


def reference_with_programme(inputs: dict, seed: int, patient: str) -> ad.AnnData:
    """The reference samples (``*_ref``) simulated again with ``patient``'s disease programme added,
    exactly as the simulator adds it to the patient's own cells (a natural-log effect per gene on
    each cell's expected composition, before it is normalised, :mod:`remnant.sim.confounders`).

    The gene model, the confounders and each donor are rebuilt from the same seed and generators as
    :func:`simulate_cohort` builds them, and each sample is drawn by the simulator's own
    :func:`remnant.sim.sample.simulate_sample` with its own generators: the same cells (states,
    phases, library sizes, the sample's immediate-early factor) whose counts are drawn from
    expectations that carry the programme. With a zero programme this gives the reference's counts
    exactly (checked by hand for seed 0 at 2,000 UMI). Returns the cells as :func:`sample_adata` does.
    """
    p = resolve_params(inputs["params"], samples=inputs["samples"])
    model = GeneModel(inputs["genes"], inputs["markers"], inputs["gene_sets"], p, np.random.default_rng([seed, 0]), "")
    conf = Confounders(model, p, seed, "params")
    model.state_effect[conf.label] = conf.other_effect
    condition = inputs["samples"].drop_duplicates("patient").set_index("patient").loc[patient, "condition"]
    programme, _ = conf.disease_programme(patient, str(condition))
    parts = []
    for _, row in inputs["samples"][inputs["samples"]["sample"].str.endswith("_ref")].iterrows():
        donor = Patient(row["patient"], row["condition"], model, p, child_rng(seed, 1, row["patient"]))
        donor.programme = programme
        counts, truth, _, _ = simulate_sample(
            child_rng(seed, 2, row["sample"]),
            row,
            donor,
            model,
            p,
            is_index_sorted(row, p),
            (conf, child_rng(seed, 5, row["sample"])),
        )
        parts.append(sample_adata(counts, row, inputs["genes"], truth.set_index("barcode")))
    return ad.concat(parts, merge="same")


def confounded_genes(sim) -> set[str]:
    """Symbols of the genes the simulator's confounders move (empty without them): the patients'
    disease programmes, the other type's programme, the immediate-early genes and the
    dominant-transcript families."""
    if not sim.confounders:
        return set()
    c = sim.params["confounders"]
    names = set(sim.confounders["programme"]["gene_name"].astype(str))
    names |= set(sim.confounders["other_type"]["gene_name"].astype(str))
    names |= set(map(str, c["immediate_early"]["genes"]))
    for fam in c["dominant_transcripts"]["families"]:
        names |= set(map(str, fam["genes"]))
    return names


def run(depth, frac, cells, seed, lesions, do_infercnv, confounders=True, cluster_null=True):
    inputs = cohort_inputs(depth, frac, cells, confounders=confounders)
    adata = build(inputs, seed)
    ref = adata.obs["sample"].str.endswith("_ref").to_numpy()
    t0 = time.perf_counter()
    call_lesions(adata, lesions, reference=ref, cluster_null=cluster_null)
    dt = time.perf_counter() - t0
    obs = adata.obs
    mds = (obs["condition"] == "MDS").to_numpy()
    held = obs["sample"].str.endswith("_held").to_numpy()
    truth = obs["truth"].to_numpy(bool)
    other = obs["other_type"].to_numpy(bool)
    post, call, llr = obs["del5q_posterior"].to_numpy(), obs["del5q_call"].to_numpy(), obs["del5q_llr"].to_numpy()
    ps = adata.uns["lesions"]["del5q"]["per_sample"]
    mds_samples = ps.index[ps.index.str.startswith("P")]
    out = {
        "depth": depth,
        "clone": frac,
        "n_cells": adata.n_obs,
        "auroc": auroc(post[mds], truth[mds]) if 0 < truth[mds].mean() < 1 else float("nan"),
        "auroc_vs_held": auroc(llr[mds | held], truth[mds | held]),
        "fpr_held": float(call[held].mean()),
        "called_noncarrier": float(call[mds & ~truth & ~other].mean())
        if (mds & ~truth & ~other).any()
        else float("nan"),
        "called_other_type": float(call[other].mean()) if other.any() else float("nan"),
        "fpr_held_prior0.5": float(np.mean(llr[held] >= np.log(9))),
        "sens": float(call[mds & truth].mean()) if (mds & truth).any() else float("nan"),
        "precision": float(truth[mds & call].mean()) if (mds & call).any() else float("nan"),
        "prior_mds": float(ps.loc[mds_samples, "prior"].mean()),
        "true_frac": float(truth[mds].mean()),
        "est_fpr": float(ps.loc[mds_samples, "fpr"].mean()),
        "est_fnr": float(ps.loc[mds_samples, "fnr"].mean()),
        "T": float(adata.uns["lesions"]["del5q"]["batches"]["temperature"].max()),
        "refined": n_refined(adata.uns["lesions"]["del5q"]["intervals"]),
        "sec": dt,
    }
    out.update(calibration(post[mds & ~other], truth[mds & ~other]))
    out.update(information(adata, ref, held, mds, truth, lesions, inputs, seed))
    if do_infercnv:
        out.update(run_infercnv(adata, ref, mds, held, truth))
    return out


def calibration(post: np.ndarray, truth: np.ndarray, bins: int = 10) -> dict:
    """How honest the posteriors (n,) are against the truth (n,) bool: ``post_mean`` (their mean, the
    mixture's carrier fraction) beside ``true_frac_hspc``; ``ece`` (expected calibration error: the
    cells' share-weighted gap between mean posterior and carrier share over ``bins`` equal-width bins);
    ``mid_post`` / ``mid_truth``: mean posterior and carrier share of the cells between 0.5 and 0.9 (the
    undecided cells, where a miscalibration shows first)."""
    b = np.minimum((post * bins).astype(int), bins - 1)
    ece = sum(abs(post[b == i].mean() - truth[b == i].mean()) * np.mean(b == i) for i in range(bins) if (b == i).any())
    mid = (post > 0.5) & (post < 0.9)
    return {
        "post_mean": float(post.mean()),
        "true_frac_hspc": float(truth.mean()),
        "ece": float(ece),
        "mid_post": float(post[mid].mean()) if mid.any() else float("nan"),
        "mid_truth": float(truth[mid].mean()) if mid.any() else float("nan"),
    }


def n_refined(intervals: pd.DataFrame) -> int:
    """How many patients (donors ``P*``) remnant re-scored on an interval of their own (``refine``)."""
    return int(intervals.loc[intervals["donor"].astype(str).str.startswith("P"), "refined"].astype(bool).sum())


def information(adata, ref, held, mds, truth, lesions, inputs, seed):
    """How much the data can tell: the lesion's share of counts, and oracles that know each
    patient's TRUE deleted interval (call_lesions on exactly those genes, no refinement).

    ``lesion_share``: share of nuclear counts of reference cells on the configured lesion's genes.
    ``oracle_auroc_vs_held``: per patient, AUROC of the interval oracle's LLR of its cells + held-out
    healthy cells, averaged over patients (the best a count likelihood can do against this reference);
    ``dropped_auroc_vs_held``: the same without the genes the confounders move.
    On each patient's own cells only (carriers against every non-carrier, other-type cells
    included), averaged over patients: ``auroc_patient`` (remnant's LLR), ``oracle_auroc_patient``
    (the interval oracle's), ``programme_auroc_patient`` (:func:`programme_oracle`, given the interval
    and the patient's disease programme), ``gap_programme`` (remnant minus the programme oracle) and
    ``gap_programme_se`` (its standard error from the cells' sampling: :func:`paired_gap_se` per patient);
    ``programme_config_auroc_patient`` / ``gap_config``: the same oracle given the configured region
    instead of the patient's interval (what is left when the interval cannot be learnt).
    """
    from remnant.tl.lesions import genes_in

    X = adata.layers["counts"]
    chrom = adata.var["chromosome"].astype(str).to_numpy()
    nuclear = chrom != "chrM"
    share = float(X[ref][:, genes_in(adata.var, lesions[0]) & nuclear].sum() / X[ref][:, nuclear].sum())
    cyto = load_cytobands(ROOT / "resources/annotation/GRCh38_cytobands.tsv")
    aucs = []
    remnant_llr = adata.obs["del5q_llr"].to_numpy()
    for _, p in adata.uns["truth_patients"].iterrows():
        if p["condition"] != "MDS":
            continue
        oracle = parse_lesions(
            [{"name": "del5q", "type": "loss", "region": f"chr5:{int(float(p['start']))}-{int(float(p['end']))}"}],
            cyto,
            chromosome_arms(cyto),
        )
        own = (adata.obs["patient"] == p["patient"]).to_numpy()
        aucs.append(("auroc_patient", auroc(remnant_llr[own], truth[own])))
        keep = ref | held | own
        m = (mds | held)[keep]
        # the oracle given the interval; and the same with the genes the confounders moved left
        # out (of the lesion and of the depth alike): a model told which genes to ignore. It is not
        # an upper bound: it loses what those genes still say about copy number
        for name, genes in (("oracle", slice(None)), ("dropped", ~adata.var["confounded"].to_numpy())):
            b = adata[keep, genes].copy()
            call_lesions(b, oracle, reference=ref[keep], refine=False, patient_levels=False)
            b_llr = b.obs["del5q_llr"].to_numpy()
            aucs.append((f"{name}_auroc_vs_held", auroc(b_llr[m], truth[keep][m])))
            if name == "oracle":
                aucs.append(("oracle_auroc_patient", auroc(b_llr[own[keep]], truth[keep][own[keep]])))
        pref = programme_reference(adata, ref, inputs, seed, p["patient"])
        o_llr = programme_scores(pref, adata, own, oracle)
        aucs.append(("programme_auroc_patient", auroc(o_llr, truth[own])))
        # the gap's own sampling error, squared (summed over patients below, then / n_patients^2)
        aucs.append(("gap_programme_var", paired_gap_se(remnant_llr[own], o_llr, truth[own], seed) ** 2))
        # the same given only the configured region, what remnant scores when a patient's interval
        # cannot be fitted (too few carriers): the part of the gap that is the interval
        aucs.append(("programme_config_auroc_patient", programme_oracle(pref, adata, own, lesions)))
    aucs = pd.DataFrame(aucs, columns=["name", "auroc"]).groupby("name", sort=False)["auroc"].mean()
    out = {"lesion_share": share, **{k: float(v) for k, v in aucs.items()}}
    out["gap_programme"] = out["auroc_patient"] - out["programme_auroc_patient"]
    # the mean over patients of independent gaps: its variance is the patients' variances' mean / n_patients
    n_patients = int((adata.uns["truth_patients"]["condition"] == "MDS").sum())
    out["gap_programme_se"] = float(np.sqrt(out.pop("gap_programme_var") / n_patients))
    out["gap_config"] = out["auroc_patient"] - out["programme_config_auroc_patient"]
    return out


def programme_reference(adata, ref, inputs, seed, patient) -> ad.AnnData:
    """The reference of :func:`programme_oracle`: the reference donors' cells with the patient's
    programme when the confounders are on, else the reference as is."""
    if inputs["params"]["confounders"].get("enabled", True):
        return reference_with_programme(inputs, seed, patient)
    return adata[ref].copy()


def programme_oracle(pref, adata, own, oracle) -> float:
    """AUROC on the patient's cells (``own``) of :func:`programme_scores`."""
    return auroc(programme_scores(pref, adata, own, oracle), adata.obs["truth"].to_numpy(bool)[own])


def programme_scores(pref, adata, own, oracle) -> np.ndarray:
    """The LLRs of the patient's cells (``own``) from call_lesions given the patient's TRUE interval
    (``oracle``, no refinement) AND its disease programme: scored against a reference ``pref`` that carries
    the programme (:func:`programme_reference`, :func:`reference_with_programme`: the reference donors' cells simulated again
    with the programme, exactly as the simulator adds it to the patient's cells), so the state
    profiles it learns hold the programme's folds. Without confounders it is the reference as is
    (the re-simulation with no programme gives the same counts).

    It knows the interval and the programme; it does not know the patient's own per-gene
    expression effect (that of every donor, which the interval oracle faces too), which cells are
    of the other type (state OTHER, which the reference lacks: scored against the pooled profile as
    remnant scores them) or hold haemoglobin, nor the sample's immediate-early factor: those are
    left to remnant's depth exclusions and outlier-robust evidence, as for remnant itself.
    """
    cells = adata[own]
    b = ad.concat([pref, cells], merge="same")
    b.obs_names_make_unique()
    is_ref = np.arange(b.n_obs) < pref.n_obs
    call_lesions(b, oracle, reference=is_ref, refine=False, patient_levels=False)
    return b.obs["del5q_llr"].to_numpy()[~is_ref]


def run_infercnv(adata, ref, mds, held, truth):
    import infercnvpy as cnv
    import scanpy as sc

    b = ad.AnnData(adata.layers["counts"].copy(), obs=adata.obs[["sample", "hspc_state"]].copy(), var=adata.var.copy())
    b.obs["ref"] = np.where(ref, b.obs["hspc_state"].astype(str) + "_ref", "query")
    sc.pp.normalize_total(b, target_sum=1e4)
    sc.pp.log1p(b)
    t0 = time.perf_counter()
    cnv.tl.infercnv(
        b, reference_key="ref", reference_cat=sorted(set(b.obs["ref"]) - {"query"}), window_size=250, n_jobs=1
    )
    dt = time.perf_counter() - t0
    chr_pos = b.uns["cnv"]["chr_pos"]
    X = b.obsm["X_cnv"]
    # windows on chr5 between 67.4 and 160.5 Mb: infercnvpy windows follow gene order on the chromosome
    var5 = b.var[b.var["chromosome"] == "chr5"].sort_values("start")
    start = chr_pos["chr5"]
    keys = list(chr_pos)
    stop = chr_pos[keys[keys.index("chr5") + 1]] if keys.index("chr5") + 1 < len(keys) else X.shape[1]
    nwin = stop - start
    # approximate the window -> position map by spreading chr5 genes evenly over its windows
    pos = np.linspace(var5["start"].iloc[0], var5["start"].iloc[-1], nwin)
    sel = start + np.flatnonzero((pos >= 67_400_000) & (pos < 160_500_000))
    score = -np.asarray(X[:, sel].mean(axis=1)).ravel()
    return {
        "icnv_auroc": auroc(score[mds], truth[mds]) if 0 < truth[mds].mean() < 1 else float("nan"),
        "icnv_auroc_vs_held": auroc(score[mds | held], truth[mds | held]),
        "icnv_sec": dt,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2,000 UMI only")
    ap.add_argument("--infercnv", action="store_true")
    ap.add_argument("--cells", type=int, default=600, help="cells per sample")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="cohort seeds (the gene model too)")
    ap.add_argument(
        "--confounders", choices=["both", "on", "off"], default="both", help="simulator confounders (default: both)"
    )
    ap.add_argument(
        "--ablate", action="store_true", help="only the ablation: each confounder alone, 2,000 UMI, clone fraction 50%%"
    )
    ap.add_argument("--depths", type=float, nargs="+", help="median UMI/cell (default 500 2000 10000; --quick: 2000)")
    ap.add_argument("--clones", type=float, nargs="+", default=[0.01, 0.1, 0.5, 1.0], help="clone fractions")
    ap.add_argument("--json", type=Path, help="also write every row (all columns) to this JSON file")
    ap.add_argument(
        "--cluster-null",
        choices=["both", "on", "off"],
        default="on",
        help="call_lesions(cluster_null=...) (cnv.cluster_null; default on, as the library since session 39)",
    )
    args = ap.parse_args()
    cyto = load_cytobands(ROOT / "resources/annotation/GRCh38_cytobands.tsv")
    lesions = parse_lesions(None, cyto, chromosome_arms(cyto))
    depths = args.depths or ([2000] if args.quick else [500, 2000, 10000])
    fracs = args.clones
    if args.ablate:
        ablation(args.cells, args.seeds, lesions)
        return
    settings = {"both": (False, True), "on": (True,), "off": (False,)}[args.confounders]
    nulls = {"both": (False, True), "on": (True,), "off": (False,)}[args.cluster_null]
    rows = []
    for depth in depths:
        for frac, seed, conf, null in itertools.product(fracs, args.seeds, settings, nulls):
            row = run(depth, frac, args.cells, seed, lesions, args.infercnv, conf, null)
            rows.append(
                {"confounders": conf, "seed": seed, **({"cluster_null": null} if len(nulls) > 1 else {}), **row}
            )
            print(pd.DataFrame(rows[-1:]).round(4).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    print()
    print(table.round(4).to_string(index=False))
    if len(settings) == 2:
        print()
        print(side_by_side(table).to_string(index=False))
    print()
    print("Calibration of the posteriors on the patients' HSPC cells (the other-type cells left out):")
    keys = ["depth", "clone", "seed", "confounders", *(["cluster_null"] if "cluster_null" in table else [])]
    print(table[[*keys, *CALIBRATION]].round(4).to_string(index=False))
    print()
    print("AUROC of the per-cell LLR on the patients' own cells (carriers vs all their non-carriers):")
    print(table[[*keys, *ORACLES]].round(4).to_string(index=False))
    if args.json:
        args.json.write_text(table.to_json(orient="records", indent=1))


_NONE = {
    "dominant_transcripts": {"families": []},
    "immediate_early": {"floor_quantile": 0.0, "sample_log2fc_sd": 0.0},
    "other_type": {"fraction": 0.0},
    "disease_programme": {"n_genes": 0},
}
#: Confounder settings of the ablation: none, each alone (the defaults' magnitudes), all, and all with
#: an adversarial programme (40 of its genes inside del(5q)'s range, all down 4-16-fold).
ABLATIONS = {
    "none": {"enabled": False},
    "programme": {**_NONE, "disease_programme": {}},
    "haemoglobin": {k: v for k, v in _NONE.items() if k != "dominant_transcripts"},
    "immediate_early": {k: v for k, v in _NONE.items() if k != "immediate_early"},
    "other_type": {k: v for k, v in _NONE.items() if k != "other_type"},
    "all": {},
    "all+programme_in_5q": {"disease_programme": {"in_lesions": 40, "in_lesions_direction": "lesion"}},
}


def ablation(cells: int, seeds: list[int], lesions) -> None:
    """Each confounder alone at 2,000 UMI/cell and clone fraction 50%: what each costs."""
    rows = []
    for seed, (name, conf) in itertools.product(seeds, ABLATIONS.items()):
        rows.append({"confounders": name, "seed": seed, **run(2000, 0.5, cells, seed, lesions, False, conf)})
        print(pd.DataFrame(rows[-1:]).round(4).to_string(index=False), flush=True)
    print()
    print(pd.DataFrame(rows)[["confounders", "seed", *COMPARED]].round(4).to_string(index=False))
    print()
    print(pd.DataFrame(rows)[["confounders", "seed", *ORACLES]].round(4).to_string(index=False))


#: remnant beside the oracles, on the same cells: each patient's own (averaged over patients).
ORACLES = ["auroc_patient", "oracle_auroc_patient", "programme_auroc_patient", "gap_programme", "gap_programme_se"]
ORACLES += ["refined"]
ORACLES += ["programme_config_auroc_patient", "gap_config"]

#: The posteriors' calibration on the patients' HSPC cells (:func:`calibration`).
CALIBRATION = ["post_mean", "true_frac_hspc", "ece", "mid_post", "mid_truth"]

#: Columns compared without and with the simulator's confounders.
COMPARED = [
    "auroc",
    "auroc_vs_held",
    "oracle_auroc_vs_held",
    "dropped_auroc_vs_held",
    "auroc_patient",
    "programme_auroc_patient",
    "fpr_held",
    "called_noncarrier",
    "called_other_type",
    "sens",
]


def side_by_side(table: pd.DataFrame) -> pd.DataFrame:
    """One row per depth, clone fraction and seed: each compared column without (``_off``) and with (``_on``)
    the confounders."""
    key = ["depth", "clone", "seed", *(["cluster_null"] if "cluster_null" in table else [])]
    off = table[~table["confounders"]].set_index(key)[COMPARED]
    on = table[table["confounders"]].set_index(key)[COMPARED]
    out = off.join(on, lsuffix="_off", rsuffix="_on")
    return out[[f"{c}_{s}" for c in COMPARED for s in ("off", "on")]].round(4).reset_index()


if __name__ == "__main__":
    main()
