"""The run directory and the files attnviz reads and writes: schema, safe arrays, atomic files,
the run (read-only) and its writer. numpy and the standard library only."""
