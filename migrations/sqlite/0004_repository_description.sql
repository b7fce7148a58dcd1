-- A repository's description (SQLite dialect), set when it is created through the
-- management API or changed later; empty when none was given.

ALTER TABLE repositories ADD COLUMN description TEXT NOT NULL DEFAULT '';
