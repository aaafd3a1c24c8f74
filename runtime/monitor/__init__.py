"""Judging a deployed detector's outputs: comparison against a reference (verification, threshold
calibration, fidelity), score drift against the export's normal statistics, and Prometheus
metrics; shared by the camera loop, serving, export and the bench."""
