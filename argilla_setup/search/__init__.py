"""The project's persistent search engine for argilla-server: Elasticsearch's request layer on SQLite.

`engine` is the argilla-server `SearchEngine` (importing this package registers it as `ENGINE_NAME`),
`query` interprets the Elasticsearch query DSL over JSON documents, `text` is its full-text part.
"""

from argilla_setup.search.engine import (
    ENGINE_NAME,
    SEARCH_DB_ENV,
    SQLiteSearchEngine,
    reindex,
    search_db_path,
)
from argilla_setup.search.query import (
    DocumentNotFoundError,
    IndexNotFoundError,
    QueryError,
    UnsupportedQueryError,
)

__all__ = [
    "ENGINE_NAME",
    "SEARCH_DB_ENV",
    "DocumentNotFoundError",
    "IndexNotFoundError",
    "QueryError",
    "SQLiteSearchEngine",
    "UnsupportedQueryError",
    "reindex",
    "search_db_path",
]
