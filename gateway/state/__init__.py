"""What the gateway remembers between requests, behind interfaces a shared implementation (Redis) can take."""
