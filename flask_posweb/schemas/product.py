"""Product group: ``productCreated`` and its siblings.

DealPOS's page shows the top level only, with no required marks; ``Storage``
and ``Variants`` items are collapsed, so they are kept as plain objects.
"""

from __future__ import annotations

from .base import BaseSchema
from .base import boolean
from .base import many
from .base import strings
from .base import text


class ProductSchema(BaseSchema):
    """A product, as sent by Product Created (and, presumably, Updated/Deleted)."""

    ID = text()
    Category = text()
    Name = text()
    SupplierName = text()
    Brand = text()
    BrandName = text()
    Code = text()
    Discontinued = boolean()
    Description = text()
    Storage = many()
    Tags = strings()
    ImageURL = text()
    ThumbnailURL = text()
    ExtraImageURL = strings()
    Variants = many()
