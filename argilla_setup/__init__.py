"""Everything Argilla: the embedded server, its search engine, users and the round dataset schema."""
