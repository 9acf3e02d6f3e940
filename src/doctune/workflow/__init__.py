"""Running the pipeline: the config and its schema (``config``), the checks before the first job
(``preflight``), the harness every rule script runs in (``pipeline``: logging, threads, missing
data, provenance), what makes a rule rerun (``codedeps``), stale locks (``runlock``), provenance
records (``provenance``) and the time per stage (``timing``)."""
