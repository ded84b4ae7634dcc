"""Reports: atomic result files, Markdown tables, figures."""
