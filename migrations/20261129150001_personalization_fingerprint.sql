-- The personalization cache is keyed by a fingerprint: the SHA-256 of what the chosen engine
-- actually reads of the reader (for the rule engine, the facets the chapter's directives
-- mention; for the model, the whole profile) and the chapter version. An edit of the profile
-- that cannot change a chapter keeps its copy; `profile_hash` stays on the row as the profile
-- the copy was made from.
--
-- Rows made before this migration have no fingerprint: no request looks them up again, and the
-- janitor removes them (object first, then row) like any other stale copy, so no row ever
-- points at a missing object on the way.
ALTER TABLE personalized_chapters
    ADD COLUMN fingerprint text CHECK (fingerprint ~ '^[0-9a-f]{64}$');

-- One profile can now have two copies of a chapter (made with and without a model, whose
-- fingerprints differ), so the profile hash no longer identifies a copy; the fingerprint does.
ALTER TABLE personalized_chapters
    DROP CONSTRAINT personalized_chapters_user_id_chapter_id_profile_hash_chapt_key,
    ADD CONSTRAINT personalized_chapters_fingerprint_key
        UNIQUE (user_id, chapter_id, chapter_version, fingerprint);
