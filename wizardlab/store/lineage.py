"""Lineage and curation queries: root search with filters, trees, bulk selections."""


class LineageQueries:
    pass
