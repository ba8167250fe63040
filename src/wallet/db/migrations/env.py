"""Alembic environment: runs the hand-written SQL migrations over a plain psycopg connection,
then installs the ledger's functions (wallet.ledger.code) in the same transaction, so a database
never has the new tables with the old functions. The functions are this code's, written for the
newest schema: an upgrade to an older revision (a test of a migration) leaves them out."""

from alembic import context
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from wallet.ledger import code

url = context.config.get_main_option("sqlalchemy.url")
assert url is not None, "the migration runner must set sqlalchemy.url"
# One migration at a time: the advisory lock "wallet" in ASCII, then 2 (0x77616C6C65740002).
MIGRATE_LOCK = "SELECT pg_advisory_xact_lock(8602275976068726786)"

engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, transactional_ddl=True)
    with context.begin_transaction():
        connection.exec_driver_sql(MIGRATE_LOCK)
        context.run_migrations()
        head = ScriptDirectory.from_config(context.config).get_current_head()
        if context.get_revision_argument() in (head, "head"):
            # Straight to the driver's cursor: a script sent with no parameters at all is sent as
            # it is (no bind parameter or percent sign processing), in the same transaction.
            connection.connection.cursor().execute(code.install_script())
engine.dispose()
