"""Everything that leaves the process: the docker engine, OCI registries, the package index, image filesystems."""
