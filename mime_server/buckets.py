"""The latency histogram's bucket bounds: one tuple, importable without any of the services' dependencies.

The SLO rules select `le` values from it, and the stack settings refuse a latency threshold that
is not one of them, so this module must import nothing (the Pulumi program's venv holds only
requirements.txt, not the services' packages).
"""

LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
