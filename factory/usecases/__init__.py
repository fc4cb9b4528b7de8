"""What a maintainer asks for (build, publish, verify, smoke, lock, upstream, propose): core plus adapters."""
