"""The read-only HTTP API (shared/CONTRACT.md section 5) and the monitoring web page it serves."""
