"""Allele counts per cell at heterozygous germline SNPs, consistent with the simulated expression.

A deletion removes one haplotype: at heterozygous SNPs inside it a carrier's reads come from the
retained haplotype only. The ``alleles`` block of the simulator parameters
(``config/schemas/demo.schema.yaml``; off by default) adds, for every sample, allele counts in the
layout :func:`remnant.io.alleles.read_cellsnp` returns (cells x SNPs, ``layers["AD"]`` ALT reads,
``layers["DP"]`` REF + ALT reads), drawn from the sample's simulated counts:

1. **Sites**, per patient (healthy donors too): on each simulated gene inside a configured lesion's
   widest range (proximal low to distal high) or the control region, whose baseline is above
   ``min_expression_quantile`` of the nuclear genes' (not on chrY, nor on chrX in male donors: one copy),
   Poisson(``sites_per_gene``) heterozygous SNPs
   at uniform positions of the gene body, random REF and ALT bases, and a random phase: which allele
   (REF or ALT) sits on haplotype A, the haplotype a loss removes and a gain duplicates.
2. **Reads**, per cell (doublet component) and gene with sites: ``Binomial(UMIs of the gene, q_g)``
   allele reads, ``q_g = reads_per_umi[technology] * k_g / kbar`` (``k_g`` the gene's sites,
   ``kbar`` their expression-weighted mean over the region's genes, so that a region gives about
   ``reads_per_umi`` allele reads per expression UMI), split uniformly among the gene's sites.
3. **Haplotype share** of each (cell, gene): a normal cell draws ``Beta(2 a f, 2 a (1 - f))`` with
   ``f = 1/2`` (``a = burst_concentration[technology]``: transcriptional bursting, so the reads of
   one gene in one cell tend to share an allele; small ``a`` is nearly monoallelic, as plate data
   are); a carrier of a lesion whose interval holds the gene has ``f = max(0, 2c - 1) / (2c)`` for
   copy ratio ``c`` (0 for a one-copy loss: only the retained haplotype; 2/3 for ``c = 1.5``). Cells
   of another type and healthy donors' cells are normal. With ``imbalanced_genes`` > 0 that share of
   each person's genes with sites express one haplotype more than the other in every cell (allele-specific
   expression: cis-eQTLs, imprinting): their normal share ``f0`` is drawn uniformly from [0.1, 0.3] or
   [0.7, 0.9], a loss carrier's is still 0 and a gain carrier's ``(2c - 1) f0 / ((2c - 1) f0 + 1 - f0)``
   (from ``default_rng([seed, 9, crc32(patient)])``: the sites are those drawn without it).
   Each read comes from haplotype A with that
   share, shows that haplotype's allele, and is flipped to the other allele with probability
   ``error_rate``. Doublets sum their two cells' allele counts.

Randomness: the sites of a patient come from ``default_rng([seed, 7, crc32(patient)])`` and the reads
of a sample from ``default_rng([seed, 8, crc32(sample)])``; they only read the simulated counts, so
switching alleles on changes no expression draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from remnant.io._common import new_adata
from remnant.sim.model import GeneModel, Patient, child_rng, in_interval

__all__ = ["AlleleModel", "PatientSites", "CONTROL", "with_homozygous_sites", "with_noisy_sites"]

#: ``lesion`` value of the truth rows of control-region sites.
CONTROL = "control"
_BASES = np.array(list("ACGT"))
#: Columns of the truth table (:meth:`AlleleModel.truth`).
TRUTH_COLUMNS = [
    "patient",
    "site_id",
    "chromosome",
    "position",
    "ref",
    "alt",
    "gene",
    "gene_id",
    "lesion",
    "in_lesion",
    "lost_allele",
]


@dataclass
class PatientSites:
    """One patient's heterozygous sites (``n`` of them, in genome order) and what acts on them.

    Attributes
    ----------
    var
        The allele AnnData's ``var`` (``chromosome, position`` (1-based) ``, ref, alt, site_id``),
        indexed by ``site_id``.
    gene
        (n,) simulated-gene index of each site.
    alt_on_a
        (n,) bool: the ALT allele sits on haplotype A (the one a loss removes).
    genes
        (m,) the genes with sites (sorted); ``k`` (m,) their site counts; ``by_gene`` (n,) site
        indices grouped by gene in the order of ``genes`` (``offset`` (m,) where each group starts).
    rate_scale
        (m,) ``k_g / kbar`` of each gene's region (the factor on ``reads_per_umi``).
    share
        (lesions, m) expected haplotype-A share of a carrier of each lesion (the normal share ``base``
        outside the patient's interval or for a patient without the lesion).
    base
        (m,) expected haplotype-A share of a normal cell: 1/2, or away from it on the genes with
        allele-specific expression (``imbalanced_genes``).
    truth
        One row per site and region holding it (:data:`TRUTH_COLUMNS`).
    """

    var: pd.DataFrame
    gene: np.ndarray
    alt_on_a: np.ndarray
    genes: np.ndarray
    k: np.ndarray
    by_gene: np.ndarray
    offset: np.ndarray
    rate_scale: np.ndarray
    share: np.ndarray
    base: np.ndarray
    truth: pd.DataFrame


class AlleleModel:
    """Cohort-wide allele parameters: the regions and the genes eligible for sites (module docstring)."""

    def __init__(self, model: GeneModel, p: dict, seed: int):
        self.model, self.p, self.seed = model, p["alleles"], int(seed)
        self.lesions = p["lesions"]
        genes = model.genes
        self.regions: list[tuple[str, np.ndarray]] = []  # (lesion name or CONTROL, gene mask)
        for lesion in self.lesions:
            m = in_interval(genes, lesion["chromosome"], lesion["proximal"][0], lesion["distal"][1])
            self.regions.append((lesion["name"], m))
        control = self.p["control"]
        if control is not None:
            self.regions.append((CONTROL, in_interval(genes, control["chromosome"], control["start"], control["end"])))
        finite = np.isfinite(model.log_base) & ~model.mito
        cut = np.quantile(model.log_base[finite], self.p["min_expression_quantile"]) if finite.any() else np.inf
        self.eligible = finite & (model.log_base >= cut)
        self.in_region = np.zeros(model.n, bool)
        for _, m in self.regions:
            self.in_region |= m

    # -- per patient ---------------------------------------------------------------------------------
    def patient_sites(self, patient: Patient) -> PatientSites:
        """The patient's sites, phases and carrier shares, from ``default_rng([seed, 7, crc32(patient)])``."""
        rng = child_rng(self.seed, 7, patient.name)
        # one copy of chrX in male donors and of chrY in everyone: no heterozygous sites there
        chrom_all = self.model.genes["chromosome"].to_numpy()
        single_copy = (chrom_all == "chrY") | ((chrom_all == "chrX") & patient.male)
        candidates = np.flatnonzero(self.in_region & self.eligible & np.isfinite(patient.log_base) & ~single_copy)
        per_gene = rng.poisson(self.p["sites_per_gene"], candidates.size)
        gene = np.repeat(candidates, per_gene)
        g = self.model.genes
        start = g["start"].to_numpy(np.int64)[gene]
        length = np.maximum(1, g["end"].to_numpy(np.int64)[gene] - start)
        position = start + rng.integers(0, length) + 1  # 1-based, inside [start, end)
        ref = rng.integers(0, 4, gene.size)
        alt = (ref + rng.integers(1, 4, gene.size)) % 4  # another base
        alt_on_a = rng.random(gene.size) < 0.5
        chrom = g["chromosome"].astype(str).to_numpy()[gene]
        # genome order (the annotation's chromosome order, then position); one SNP per position
        rank = pd.Index(pd.unique(g["chromosome"].astype(str))).get_indexer(chrom)
        order = np.lexsort((position, rank))
        keep = order[~pd.DataFrame({"c": chrom[order], "p": position[order]}).duplicated().to_numpy()]
        return self._assemble(patient, gene[keep], chrom[keep], position[keep], ref[keep], alt[keep], alt_on_a[keep])

    def _assemble(self, patient, gene, chrom, position, ref, alt, alt_on_a) -> PatientSites:
        """The :class:`PatientSites` of sites already drawn (arrays in genome order)."""
        ref_b, alt_b = _BASES[ref], _BASES[alt]
        site_id = pd.Series(chrom).str.cat([pd.Series(position).astype(str), pd.Series(ref_b)], sep=":")
        site_id = (site_id + ">" + alt_b).to_numpy(dtype=object).astype(str)
        var = pd.DataFrame(
            {
                "chromosome": chrom,
                "position": position.astype(np.int64),
                "ref": ref_b,
                "alt": alt_b,
                "site_id": site_id,
            },
            index=pd.Index(site_id),
        )
        genes, k = np.unique(gene, return_counts=True)
        by_gene = np.argsort(gene, kind="stable")
        offset = np.concatenate([[0], np.cumsum(k)[:-1]]).astype(np.int64)
        base = self._normal_share(patient, genes)
        return PatientSites(
            var=var,
            gene=gene,
            alt_on_a=alt_on_a,
            genes=genes,
            k=k,
            by_gene=by_gene,
            offset=offset,
            rate_scale=self._rate_scale(patient, genes, k),
            share=self._carrier_share(patient, genes, base),
            base=base,
            truth=self._truth(patient, var, gene, alt_on_a),
        )

    def _normal_share(self, patient: Patient, genes: np.ndarray) -> np.ndarray:
        """(genes with sites,) haplotype-A share of a normal cell: 1/2, or for a share ``imbalanced_genes``
        of them uniform in [0.1, 0.3] or [0.7, 0.9] (allele-specific expression), from
        ``default_rng([seed, 9, crc32(patient)])``."""
        base = np.full(genes.size, 0.5)
        fraction = float(self.p.get("imbalanced_genes", 0.0))
        if fraction > 0:
            rng = child_rng(self.seed, 9, patient.name)
            hit = rng.random(genes.size) < fraction
            away = rng.uniform(0.2, 0.4, genes.size) * np.where(rng.random(genes.size) < 0.5, -1.0, 1.0)
            base[hit] += away[hit]
        return base

    def _rate_scale(self, patient: Patient, genes: np.ndarray, k: np.ndarray) -> np.ndarray:
        """``k_g / kbar`` per gene with sites: ``kbar`` the patient's expression-weighted mean site count
        over the genes of the gene's region (the first region holding it)."""
        counts = np.zeros(self.model.n)
        counts[genes] = k
        weight = np.where(np.isfinite(patient.log_base) & ~self.model.mito, np.exp(patient.log_base), 0.0)
        scale = np.zeros(genes.size)
        done = np.zeros(genes.size, bool)
        for _, mask in self.regions:
            kbar = np.sum(weight[mask] * counts[mask]) / max(np.sum(weight[mask]), 1e-300)
            hit = mask[genes] & ~done
            if kbar > 0:
                scale[hit] = k[hit] / kbar
            done |= hit
        return scale

    def _carrier_share(self, patient: Patient, genes: np.ndarray, base: np.ndarray) -> np.ndarray:
        """(lesions, genes with sites): haplotype-A share of a carrier inside the patient's interval,
        ``a f0 / (a f0 + 1 - f0)`` with ``a = max(0, 2c - 1)`` copies of haplotype A per copy of B and
        ``f0`` the normal share (``max(0, 2c - 1) / (2c)`` at ``f0 = 1/2``); ``f0`` elsewhere (and for
        lesions the patient does not have)."""
        share = np.tile(base, (len(self.lesions), 1))
        for j, (_, _, _, _, _, ratio, mask, _) in enumerate(patient.lesions):
            a = max(0.0, 2 * ratio - 1)
            f0 = base[mask[genes]]
            share[j, mask[genes]] = a * f0 / (a * f0 + 1 - f0)
        return share

    def _truth(self, patient: Patient, var: pd.DataFrame, gene: np.ndarray, alt_on_a: np.ndarray) -> pd.DataFrame:
        """One row per site and region holding its gene (:data:`TRUTH_COLUMNS`)."""
        g = self.model.genes
        inside = {name: mask for name, _, _, _, _, _, mask, _ in patient.lesions}
        parts = []
        for name, mask in self.regions:
            rows = np.flatnonzero(mask[gene])
            own = inside.get(name)
            parts.append(
                pd.DataFrame(
                    {
                        "patient": patient.name,
                        "site_id": var["site_id"].to_numpy()[rows],
                        "chromosome": var["chromosome"].to_numpy()[rows],
                        "position": var["position"].to_numpy()[rows],
                        "ref": var["ref"].to_numpy()[rows],
                        "alt": var["alt"].to_numpy()[rows],
                        "gene": g["gene_name"].astype(str).to_numpy()[gene[rows]],
                        "gene_id": g["gene_id_version"].astype(str).to_numpy()[gene[rows]],
                        "lesion": name,
                        "in_lesion": own[gene[rows]] if own is not None else np.zeros(rows.size, bool),
                        "lost_allele": np.where(alt_on_a[rows], "ALT", "REF"),
                    }
                )
            )
        return pd.concat(parts, ignore_index=True)[TRUTH_COLUMNS]

    # -- per sample ----------------------------------------------------------------------------------
    def sample_rng(self, sample: str) -> np.random.Generator:
        """The generator of a sample's allele reads, ``default_rng([seed, 8, crc32(sample)])``."""
        return child_rng(self.seed, 8, sample)

    def draw(
        self, sites: PatientSites, rng: np.random.Generator, counts: sp.csr_matrix, carried: np.ndarray, tech: str
    ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Allele counts of simulated cells.

        Parameters
        ----------
        sites
            The patient's sites (:meth:`patient_sites`).
        rng
            The sample's allele generator (:meth:`sample_rng`).
        counts
            (cells, genes) CSR expression counts of the cells (doublet components apart).
        carried
            (cells, lesions) bool: the cell carries each configured lesion.
        tech
            ``droplet`` or ``plate`` (picks ``reads_per_umi`` and ``burst_concentration``).

        Returns
        -------
        (AD, DP)
            (cells, sites) CSR int32: ALT reads and REF + ALT reads; zeros not stored.
        """
        n_cells, n_sites = counts.shape[0], sites.gene.size
        sub = counts[:, sites.genes].tocoo()
        q = np.minimum(1.0, self.p["reads_per_umi"][tech] * sites.rate_scale[sub.col])
        n = rng.binomial(np.rint(sub.data).astype(np.int64), q)
        hit = n > 0
        cell, col, n = sub.row[hit].astype(np.int64), sub.col[hit].astype(np.int64), n[hit]
        share_a = self._haplotype_share(rng, sites, carried, cell, col, tech)
        entry, site, reads = _split_among_sites(rng, sites, col, n)
        from_a = rng.binomial(reads, share_a[entry])
        alt = np.where(sites.alt_on_a[site], from_a, reads - from_a)
        err = float(self.p["error_rate"])
        alt = rng.binomial(alt, 1.0 - err) + rng.binomial(reads - alt, err)
        shape = (n_cells, n_sites)
        dp = sp.csr_matrix((reads.astype(np.int32), (cell[entry], site)), shape=shape)
        ad = sp.csr_matrix((alt.astype(np.int32), (cell[entry], site)), shape=shape)
        for m in (dp, ad):
            m.eliminate_zeros()
            m.sort_indices()
        return ad, dp

    def _haplotype_share(self, rng, sites: PatientSites, carried: np.ndarray, cell, col, tech: str) -> np.ndarray:
        """Per (cell, gene) entry: the share of its allele reads from haplotype A, Beta(2af, 2a(1-f))
        around the expected share ``f`` (the first carried lesion holding the gene decides ``f``)."""
        f = sites.base[col]
        for j in reversed(range(sites.share.shape[0])):
            f = np.where(carried[cell, j], sites.share[j, col], f)
        a = float(self.p["burst_concentration"][tech])
        inner = (f > 0) & (f < 1)
        out = f.copy()
        out[inner] = rng.beta(2 * a * f[inner], 2 * a * (1 - f[inner]))
        return out

    def sample_alleles(
        self, sites: PatientSites, ad: sp.csr_matrix, dp: sp.csr_matrix, barcodes: pd.Index
    ) -> anndata.AnnData:
        """A sample's allele AnnData (cells x sites, the layout of :func:`remnant.io.alleles.read_cellsnp`)."""
        return new_adata(
            obs=pd.DataFrame(index=pd.Index(barcodes)),
            var=sites.var.copy(),
            layers={"AD": ad.astype(np.int32), "DP": dp.astype(np.int32)},
        )


def _split_among_sites(rng, sites: PatientSites, col: np.ndarray, n: np.ndarray):
    """Multinomial split (equal probabilities) of each entry's ``n`` reads among its gene's sites.

    Returns ``(entry, site, reads)`` per (entry, site) pair with reads > 0: the entry index, the
    site index and the reads."""
    k = sites.k[col]
    entry = np.repeat(np.arange(col.size), k)
    rank = np.arange(entry.size) - np.repeat(np.cumsum(k) - k, k)  # 0 .. k-1 within each entry
    site = sites.by_gene[sites.offset[col][entry] + rank]
    reads = np.zeros(entry.size, np.int64)
    remaining = n.astype(np.int64).copy()
    for r in range(int(k.max()) if k.size else 0):
        pairs = np.flatnonzero(rank == r)
        e = entry[pairs]
        got = rng.binomial(remaining[e], 1.0 / (k[e] - r))  # the last site takes what is left
        reads[pairs] = got
        remaining[e] -= got
    keep = reads > 0
    return entry[keep], site[keep], reads[keep]


def with_homozygous_sites(alleles: anndata.AnnData, copies: int, seed: int = 0) -> anndata.AnnData:
    """Allele counts as if counted at a list of common SNPs: ``copies`` sites beside each site of
    ``alleles`` (cells x sites, ``layers`` AD and DP) at which every person is homozygous, the same reads
    per cell as the site, all on one allele (ALT or REF, drawn per copy with ``seed``); named
    ``"{site}:hom{k}"``, one base past it. A person is homozygous at most sites of such a list (three per
    heterozygous one is about what the 1000 Genomes common SNPs give)."""
    if copies <= 0:
        return alleles
    rng = np.random.default_rng([seed, 18])
    dp = sp.csr_matrix(alleles.layers["DP"], dtype=np.int64)
    parts = [alleles]
    for k in range(1, copies + 1):
        var = alleles.var.copy()
        var["position"] = var["position"] + k
        var.index = [f"{site}:hom{k}" for site in alleles.var_names]
        if "site_id" in var:
            var["site_id"] = var.index
        alt = sp.diags((rng.random(alleles.n_vars) < 0.5).astype(np.int64))
        layers = {"AD": sp.csr_matrix(dp @ alt), "DP": dp.copy()}
        parts.append(
            anndata.AnnData(X=sp.csr_matrix(dp.shape, dtype=np.float32), obs=alleles.obs.copy(), var=var, layers=layers)
        )
    out = anndata.concat(parts, axis=1, merge="first")
    out.var = pd.concat([part.var for part in parts])
    return out


def with_noisy_sites(
    alleles: anndata.AnnData, sites, share: float, minor: float, seed: int = 0
) -> tuple[anndata.AnnData, np.ndarray]:
    """Allele counts in which a ``share`` of ``sites`` (labels of ``alleles.var_names``) behave as an
    RNA-editing or mismapped site does: every cell, carrier or not, reads the ALT allele at share
    ``minor`` (its reads per cell kept, their alleles redrawn Binomial(reads, ``minor``) with ``seed``).
    Discovery in a patient's pooled reads keeps such sites as heterozygous (RNA editing in 3' UTRs, a
    paralog's reads); a germline VCF does not. Returns the copy and the (n_noisy,) labels chosen."""
    rng = np.random.default_rng([seed, 23])
    columns = alleles.var_names.get_indexer(pd.Index(sites))
    columns = columns[columns >= 0]
    chosen = np.sort(rng.choice(columns, int(round(share * columns.size)), replace=False))
    dp = sp.csr_matrix(alleles.layers["DP"], dtype=np.int64)
    ad = sp.csr_matrix(alleles.layers["AD"], dtype=np.int64).tolil()
    noisy = dp[:, chosen].tocoo()
    ad[:, chosen] = 0
    ad[noisy.row, chosen[noisy.col]] = rng.binomial(noisy.data, minor)
    out = alleles.copy()
    out.layers["AD"] = sp.csr_matrix(ad)
    out.layers["AD"].eliminate_zeros()
    return out, alleles.var_names[chosen].to_numpy()
