"""gymnax-style environments of the paper\x27s tasks."""
