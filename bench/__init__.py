"""Benchmarks of leaderboard-cluster, side by side with Redis (see bench/README.md)."""
