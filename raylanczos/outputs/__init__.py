"""What a run leaves behind: the output store, checkpoints, the run record, rendering,
plots, comparisons and progress reporting. No Ray, no framework."""
