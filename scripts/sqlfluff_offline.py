"""sqlfluff's command line, with the dbt templater kept off the database (what scripts/sqlfluff runs).

sqlfluff-templater-dbt 4.4.0 warms dbt's relation cache before it renders any file
(`adapter.set_relations_cache(...)` in DbtTemplater.connection): catalog queries for every schema
of the project, so even `sqlfluff lint` of one model needs a reachable warehouse. dbt's own
`--no-populate-cache` does not reach it (sqlfluff issue #8239). Linting reads no data, so here:

- the warm-up records every schema of the project as known and empty instead of querying it;
- opening a connection is refused: a model or macro that would query while being rendered fails
  the lint loudly instead of reaching a server (the project's only run_query, in
  create_slice_index, is a post-hook behind `execute`, and hooks are not rendered when linting).

The models are therefore rendered as on an empty warehouse (is_incremental() false), the same on
every machine whatever a warehouse holds. With the project's default vars no model body depends on
it: is_incremental() only matters in new_data runs of a slice and in the hooks.
"""

from __future__ import annotations

import sys

from dbt.adapters.postgres import PostgresAdapter
from dbt.adapters.postgres.connections import PostgresConnectionManager
from sqlfluff.cli.commands import cli


def _schemas_known_empty(self, relation_configs, cache_schemas=None) -> None:
    schemas = cache_schemas or self._get_cache_schemas(relation_configs)
    self.cache.update_schemas({(schema.database, schema.schema) for schema in schemas if schema.schema})


def _refuse_connection(cls, connection):
    raise RuntimeError(
        "sqlfluff lint must not connect to the database (scripts/sqlfluff_offline.py): "
        "a model or macro queries while it is rendered; guard the query with `execute` or move it to a hook"
    )


# What the templater reaches in dbt-adapters and dbt-postgres as pinned: fail loudly if either moves.
for owner, name in ((PostgresAdapter, "_relations_cache_for_schemas"), (PostgresConnectionManager, "open")):
    if not callable(getattr(owner, name, None)):
        raise SystemExit(f"scripts/sqlfluff_offline.py: {owner.__name__}.{name} is gone; revisit this patch")
PostgresAdapter._relations_cache_for_schemas = _schemas_known_empty
PostgresConnectionManager.open = classmethod(_refuse_connection)

if __name__ == "__main__":
    sys.argv[0] = "sqlfluff"
    sys.exit(cli())
