"""nnstudy: the study pipeline's tested functions (data, search, grid, tracking, tables, figures, report).

The Snakemake scripts under ``workflow/scripts`` are thin wrappers around this package.
"""
