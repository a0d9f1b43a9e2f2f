"""Quality and publication: the reconciliations, the write-audit-publish step and the one refresh
path of a region-day partition (rebuild -> checks -> publish). Above ingestion, below orchestration."""
