"""The store: the tables and their migrations, every query, the runtime settings and node
reports kept in the database. The only package that writes SQL or touches a DB-API driver;
what differs per engine (SQLite: FTS5, the group-commit writer; PostgreSQL: tsvector search,
SKIP LOCKED claims) is kept apart inside it."""
