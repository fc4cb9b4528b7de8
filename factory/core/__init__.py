"""The pure core: matrix models and loading, rules, plan, input digests, labels, locks, exports.

Nothing here talks to Docker, a registry or a package index; it reads only matrix.toml, locks and the files a
Dockerfile copies. Import contracts (pyproject's [tool.importlinter]) keep httpx, python-on-whales and tomlkit out.
"""
