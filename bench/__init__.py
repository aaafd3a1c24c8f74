"""Benchmarks: latency, throughput and the hardware floor, side by side with peers."""
