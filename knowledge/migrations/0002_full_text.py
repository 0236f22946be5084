"""Full-text search over chunks, for the hybrid query (``knowledge.vectors``).

PostgreSQL: a stored ``tsvector`` column (the ``simple`` configuration: no language's
stemming is assumed) with a GIN index. SQLite: an FTS5 table over ``knowledge_chunk``
(external content, kept in step by triggers inside the same transaction).
"""

from django.db import migrations

PG_UP = [
    "ALTER TABLE knowledge_chunk ADD COLUMN search tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED",
    "CREATE INDEX knowledge_chunk_search ON knowledge_chunk USING gin (search)",
]
PG_DOWN = [
    "DROP INDEX IF EXISTS knowledge_chunk_search",
    "ALTER TABLE knowledge_chunk DROP COLUMN IF EXISTS search",
]
SQLITE_UP = [
    "CREATE VIRTUAL TABLE knowledge_chunk_fts USING fts5("
    "text, content='knowledge_chunk', content_rowid='id', tokenize='unicode61')",
    "CREATE TRIGGER knowledge_chunk_fts_ai AFTER INSERT ON knowledge_chunk BEGIN "
    "INSERT INTO knowledge_chunk_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER knowledge_chunk_fts_ad AFTER DELETE ON knowledge_chunk BEGIN "
    "INSERT INTO knowledge_chunk_fts(knowledge_chunk_fts, rowid, text) "
    "VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER knowledge_chunk_fts_au AFTER UPDATE OF text ON knowledge_chunk BEGIN "
    "INSERT INTO knowledge_chunk_fts(knowledge_chunk_fts, rowid, text) "
    "VALUES ('delete', old.id, old.text); "
    "INSERT INTO knowledge_chunk_fts(rowid, text) VALUES (new.id, new.text); END",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS knowledge_chunk_fts_au",
    "DROP TRIGGER IF EXISTS knowledge_chunk_fts_ad",
    "DROP TRIGGER IF EXISTS knowledge_chunk_fts_ai",
    "DROP TABLE IF EXISTS knowledge_chunk_fts",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        statements = statements_by_vendor.get(schema_editor.connection.vendor, [])
        for statement in statements:
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("knowledge", "0001_initial")]
    operations = [
        migrations.RunPython(
            _run({"postgresql": PG_UP, "sqlite": SQLITE_UP}),
            _run({"postgresql": PG_DOWN, "sqlite": SQLITE_DOWN}),
        )
    ]
