-- Knowledge base: articles (the source of truth), their versions, the queue the search
-- indexer follows, and searches that found nothing.

CREATE TABLE articles (
    id             TEXT PRIMARY KEY,
    slug           TEXT NOT NULL,
    locale         TEXT NOT NULL,
    title          TEXT NOT NULL,
    summary        TEXT NOT NULL DEFAULT '',
    body_markdown  TEXT NOT NULL,
    body_html      TEXT NOT NULL,
    category       TEXT NOT NULL CHECK (category IN ('guide', 'faq', 'safety_alert', 'announcement',
                                                     'visa_policy', 'document_policy', 'emergency_contacts')),
    countries      TEXT NOT NULL DEFAULT '[]',
    tags           TEXT NOT NULL DEFAULT '[]',
    status         TEXT NOT NULL CHECK (status IN ('draft', 'published', 'archived')),
    version        INTEGER NOT NULL,
    severity       TEXT CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    area_lat       REAL,
    area_lon       REAL,
    area_radius_km REAL,
    expires_at     TEXT,
    -- Set once the indexer has been told the article expired.
    expiry_indexed INTEGER NOT NULL DEFAULT 0,
    -- Hash of the imported file, to skip unchanged files on re-import.
    source_hash    TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    published_at   TEXT,
    UNIQUE (slug, locale)
);
CREATE INDEX articles_alerts ON articles (category, status, expires_at);

-- Every save is a version: a full JSON snapshot of the editable fields.
CREATE TABLE article_versions (
    article_id TEXT NOT NULL REFERENCES articles (id),
    version    INTEGER NOT NULL,
    snapshot   TEXT NOT NULL,
    editor_id  TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (article_id, version)
);

-- Written in the same transaction as the article; the indexer applies rows in order.
-- article_id '*' asks for a full rebuild.
CREATE TABLE index_queue (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    article_id  TEXT NOT NULL,
    enqueued_at TEXT NOT NULL
);

CREATE TABLE search_gaps (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    query      TEXT NOT NULL,
    normalized TEXT NOT NULL,
    locale     TEXT,
    country    TEXT,
    at         TEXT NOT NULL
);
CREATE INDEX search_gaps_at ON search_gaps (at, normalized);
