"""Reading and writing: count matrices, index-sort tables, genome annotation, gene sets, allele
counts per cell (cellsnp-lite folders, or counted from BAM files), and the block-wise cohort store
(cells x genes h5ad read without holding the matrix in memory).
"""

from remnant._lazy import exports

__getattr__, __dir__, __all__ = exports(
    __name__,
    {
        "counts": ["read_counts", "map_genes", "write_counts", "infer_format"],
        "index_sort": ["read_index_sort"],
        "sample": ["read_sample", "check_chromosomes"],
        "annotation": [
            "autosomal",
            "load_genes",
            "load_cytobands",
            "chromosome_arms",
            "genes_from_gtf",
            "gene_symbols",
        ],
        "genesets": ["read_gene_set", "read_gene_sets", "read_markers"],
        "alleles": ["read_cellsnp", "write_cellsnp", "match_cells", "annotation_chromosome", "sites_in_regions"],
        "bam": ["count_alleles", "find_sites", "read_bam_manifest", "read_sites"],
        "store": [],
    },
)
