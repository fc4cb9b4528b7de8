"""Files generated from the plan: the Buildx bake file, the CI job matrix, labels/ and the README table, SBOMs."""
