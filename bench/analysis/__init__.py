"""Analysis of finished results: paired comparisons and verdicts, statistics over the matrix, the report and its
plots, stability between runs, and transferability scores of backbones."""
