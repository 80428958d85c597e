"""Alert quality: scenario format, ground truth, the Prometheus evaluator and its agreement with promtool."""
