-- Pull-through cache (PostgreSQL dialect). `proxy_tags`: when a cached tag of a proxied
-- repository was last fetched or revalidated from its upstream (unix seconds); it is served
-- without asking the upstream until `tag_ttl` has passed. The row goes with its repository.
CREATE TABLE proxy_tags (
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    tag           TEXT COLLATE "C" NOT NULL,
    checked_at    BIGINT NOT NULL,
    PRIMARY KEY (repository_id, tag)
);
