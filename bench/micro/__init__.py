"""Micro benchmarks of one layer at a time: the Redis driver, the db driver, Queue + Worker in one process."""
