"""Reports: one self-contained HTML file per run or pipeline, with tables and plots."""
