"""The long-running service (`sweepd serve`) and the worker processes it starts.

The daemon process imports nothing of torch: each sweep runs in a `sweepd worker` child process,
so CUDA memory is released after every sweep and a crash fails only that sweep.
"""
