"""Tests of what goes into the images: the Dockerfiles and the programs they copy."""
