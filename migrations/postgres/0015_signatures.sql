-- Signatures (PostgreSQL dialect). `trust_policies`: per scope (`*` or a repository-name
-- prefix), the mode of pulls without a verified signature, cosign public keys and notation's
-- trust statement with its trust store (JSON arrays of PEM texts, the statement as given).
-- `signatures`: one row per signature of a signature manifest (a cosign tag-scheme layer, a
-- bundle or a notation envelope), the result of verifying it under the policy covering its
-- repository, rewritten when a policy changes; a pull reads it, never verifies. The row goes
-- with the signature manifest and its repository. `expires_at`: when the signing certificate
-- chain of a verified notation signature expires; the gate stops counting it then.
CREATE TABLE trust_policies (
    name        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    scope       TEXT COLLATE "C" NOT NULL,
    mode        TEXT NOT NULL CHECK (mode IN ('enforce', 'audit', 'off')),
    cosign_keys TEXT NOT NULL,
    notation    TEXT,
    trust_store TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE signatures (
    manifest_id    BIGINT NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
    layer          BIGINT NOT NULL,
    repository_id  BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    subject_digest TEXT COLLATE "C" NOT NULL,
    format         TEXT NOT NULL,
    tool           TEXT NOT NULL,
    identity       TEXT,
    verified       BIGINT NOT NULL,
    reason         TEXT,
    policy         TEXT,
    verified_at    BIGINT NOT NULL,
    expires_at     BIGINT,
    PRIMARY KEY (manifest_id, layer)
);
CREATE INDEX signatures_by_subject ON signatures (repository_id, subject_digest);
