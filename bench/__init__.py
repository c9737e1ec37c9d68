"""`make bench`: starts the real stack and prints throughput and latency figures."""
