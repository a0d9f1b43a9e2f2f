"""The read-only HTTP API and the monitoring web page it serves."""
