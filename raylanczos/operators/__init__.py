"""Products of the operator (Hessian or Gauss–Newton) over shards of the data: the
block-operator contract the loop drives, one shard's worker, and the in-process operator.
No Ray: the Ray layer wraps these."""
