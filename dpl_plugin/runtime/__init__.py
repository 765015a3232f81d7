"""Processes and files: torch.distributed, sharded data, output locks, atomic writes, random
states, the command-line error boundary and memory measurement."""
