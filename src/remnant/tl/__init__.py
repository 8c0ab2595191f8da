"""Tools: per-cell lesion calls, the automatic reference, the genome-wide copy-number profile and
breakpoints, allele evidence (genotypes, phasing, per-cell LLR), sort gates, carrier fractions, stem signatures and pseudobulk expression.
"""

from remnant._lazy import exports

__getattr__, __dir__, __all__ = exports(
    __name__,
    {
        "lesions": [
            "call_lesions",
            "parse_lesions",
            "read_lesion_counts",
            "scale_read_depth",
            "lesion_genes",
            "Lesion",
        ],
        "depth": ["DepthGenes", "read_gene_list"],
        "reference": ["find_reference"],
        "clone_prior": ["clone_posteriors"],
        "cluster_null": ["map_cluster_nulls"],
        "profile": ["infer_profile", "write_profile", "read_profile_rows"],
        "breakpoints": ["lesion_sums", "lesion_profile", "estimate_breakpoints", "LesionSums"],
        "gates": ["gate_cells", "agreement_table"],
        "fractions": ["del_fraction_table", "persistence_contrasts"],
        "signatures": ["score_signatures", "calibrate_cycling", "compare_groups"],
        "de": ["pseudobulk", "paired_de", "signature_enrichment"],
        "alleles": [
            "phase_sites",
            "allele_llr",
            "combine",
            "bursting_overdispersion",
            "lesion_sites",
            "site_genes",
            "site_error_rates",
        ],
        "allele_evidence": ["add_allele_evidence", "concat_alleles"],
        "genotypes": ["heterozygous_sites"],
    },
)
