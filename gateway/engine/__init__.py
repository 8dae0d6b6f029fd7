"""The engine that drives attempts on the upstream: the retry policy (pure) and the dispatcher (I/O)."""
