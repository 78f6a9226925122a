"""numpy only: the synthetic tasks and their samples, alignment metrics, thresholds, the verdict
and inspection statistics. Reads runs through attnviz.store; draws nothing."""
