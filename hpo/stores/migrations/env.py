"""Alembic's entry point for the registry's migrations; run by :meth:`hpo.stores.registry.Registry.open`, which
passes the open connection (there is no alembic.ini: the registry URL is the study's, not a fixed one)."""

from alembic import context

from hpo.stores.registry import VERSION_TABLE, Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
