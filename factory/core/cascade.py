"""The one defaults cascade: an image's own value, else its base's, else `[defaults]`.

Like cibuildwheel's option reader, every setting that several tables may hold is looked up here and nowhere
else, so a new setting (or a new table in the chain) is one change. Which tables may hold a setting is the
schema's business: a table without the field simply does not take part (a base has no `ray`, an image no
`python`).

    >>> setting(matrix, "python", base=matrix.base["2.10.0-cu131"])  # doctest: +SKIP
    '3.12'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from factory.core.matrix import Base, Image, Matrix

#: The settings that cascade, each a field of `[defaults]` and of a base and/or an image.
Cascaded = Literal["ubuntu", "python", "ray", "ship_on"]
CASCADED: tuple[Cascaded, ...] = ("ubuntu", "python", "ray", "ship_on")


def setting(matrix: Matrix, key: Cascaded, *, base: Base | None = None, image: Image | None = None) -> str:
    """`key` for an image (its own value, else its base's, else the default) or for a base (its own, else the
    default). An image's base is found in the matrix when not given; a missing base is skipped."""
    if image is not None and base is None:
        base = matrix.base.get(image.base)
    for table in (image, base):
        value = getattr(table, key, None) if table is not None else None
        if value is not None:
            return str(value)
    return str(getattr(matrix.defaults, key))
