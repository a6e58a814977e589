"""What the user describes: the problem (parameters, loss, data), its datasets and shard
plans, the parameter layout and blocks. Knows neither Ray nor the run."""
