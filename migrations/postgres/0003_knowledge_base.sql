-- Knowledge base: articles (the source of truth), their versions, the queue the search
-- indexers follow (one per node), and searches that found nothing.

CREATE TABLE articles (
    id             uuid PRIMARY KEY,
    slug           text NOT NULL,
    locale         text NOT NULL,
    title          text NOT NULL,
    summary        text NOT NULL DEFAULT '',
    body_markdown  text NOT NULL,
    body_html      text NOT NULL,
    category       text NOT NULL CHECK (category IN ('guide', 'faq', 'safety_alert', 'announcement',
                                                     'visa_policy', 'document_policy', 'emergency_contacts')),
    countries      jsonb NOT NULL DEFAULT '[]',
    tags           jsonb NOT NULL DEFAULT '[]',
    status         text NOT NULL CHECK (status IN ('draft', 'published', 'archived')),
    version        bigint NOT NULL,
    severity       text CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    area_lat       double precision,
    area_lon       double precision,
    area_radius_km double precision,
    expires_at     timestamptz,
    -- Set once the indexers have been told the article expired.
    expiry_indexed boolean NOT NULL DEFAULT false,
    -- Hash of the imported file, to skip unchanged files on re-import.
    source_hash    text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    published_at   timestamptz,
    UNIQUE (slug, locale)
);
CREATE INDEX articles_alerts ON articles (category, status, expires_at);

-- Every save is a version: a full JSON snapshot of the editable fields.
CREATE TABLE article_versions (
    article_id uuid NOT NULL REFERENCES articles (id),
    version    bigint NOT NULL,
    snapshot   jsonb NOT NULL,
    editor_id  uuid,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (article_id, version)
);

-- Written in the same transaction as the article; each node's indexer applies rows in
-- order. article_id '*' asks for a full rebuild. A sequence hands numbers out at
-- insert time, not at commit, so writers take a transaction lock just before the
-- insert (see the store): numbers then become visible in order, and an indexer that
-- has seen `seq` n never finds a smaller one appear later.
CREATE TABLE index_queue (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    article_id  text NOT NULL,
    enqueued_at timestamptz NOT NULL
);

-- How far each node's indexer has applied the queue. Rows are pruned only below every
-- live node's position; a node gone longer than the retention finds its position
-- pruned and rebuilds its index.
CREATE TABLE index_followers (
    node       text PRIMARY KEY,
    applied    bigint NOT NULL,
    seen_at    timestamptz NOT NULL
);

-- Single values the store keeps for itself (the index queue's pruned watermark).
CREATE TABLE store_meta (
    name  text PRIMARY KEY,
    value bigint NOT NULL
);

CREATE TABLE search_gaps (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    query      text NOT NULL,
    normalized text NOT NULL,
    locale     text,
    country    text,
    at         timestamptz NOT NULL
);
CREATE INDEX search_gaps_at ON search_gaps (at, normalized);
