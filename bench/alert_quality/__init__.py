"""bench.alert_quality: precision, recall, detection and reset time of the stack's alerts (docs/alert-quality.md)."""
