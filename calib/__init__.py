"""INT8 calibration from a folder of normal images, with accuracy-aware layer selection."""
