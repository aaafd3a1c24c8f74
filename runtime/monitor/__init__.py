"""Watching a deployed detector at work: score drift against the export's normal statistics and
Prometheus metrics, shared by the camera loop and serving."""
