"""The run: its plan, the block-operator contract, the loop over draws and passes, sweeps,
and :func:`hessian_spectrum`, which composes them. Only the Ray layer below it knows Ray."""
