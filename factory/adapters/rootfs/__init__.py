"""Reading an exported image filesystem: versions, shared-library links, GPU code (ELF and fatbin parsing)."""
