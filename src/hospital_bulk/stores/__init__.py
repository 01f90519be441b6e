"""Job stores: every one implements :class:`hospital_bulk.JobStore`."""
