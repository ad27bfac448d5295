"""GPIO drivers: the lock relay output and door inputs."""
