-- The application's own tables (snake_case). Every reference to a user cascades, so deleting
-- an account removes everything of theirs.

-- The reader's background (seeds 000-003), one per user.
CREATE TABLE user_profiles (
    user_id text PRIMARY KEY REFERENCES "user" ("id") ON DELETE CASCADE,
    software_context jsonb NOT NULL CHECK (jsonb_typeof(software_context) = 'object'),
    hardware_context jsonb NOT NULL CHECK (jsonb_typeof(hardware_context) = 'object'),
    python_proficiency text
        CHECK (python_proficiency IN ('Beginner', 'Intermediate', 'Advanced')),
    developer_role text CHECK (developer_role IN
        ('Frontend Developer', 'Backend Developer', 'Full Stack Developer', 'None')),
    robotics_experience text
        CHECK (robotics_experience IN ('none', 'simulation_only', 'real_hardware')),
    learning_goals jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(learning_goals) = 'array'),
    -- Seed 001: onboarded exactly when both onboarding answers are given.
    is_onboarded boolean NOT NULL DEFAULT false,
    -- SHA-256 of the canonical profile; the personalization cache is keyed by it.
    profile_hash text NOT NULL CHECK (profile_hash ~ '^[0-9a-f]{64}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT user_profiles_onboarded_iff_answered CHECK (
        is_onboarded = (python_proficiency IS NOT NULL AND developer_role IS NOT NULL))
);

-- Chat conversations (seed 004), owned by a user or, until claimed, by a guest (seed 000).
CREATE TABLE conversations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id text REFERENCES "user" ("id") ON DELETE CASCADE,
    guest_id uuid,
    title text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    ai_model text NOT NULL,
    system_prompt text CHECK (char_length(system_prompt) <= 8000),
    is_archived boolean NOT NULL DEFAULT false,
    is_pinned boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    last_message_at timestamptz,
    -- Nobody's conversation would be unreachable, and no one could ever delete it.
    CONSTRAINT conversations_have_an_owner CHECK (user_id IS NOT NULL OR guest_id IS NOT NULL)
);
-- Listing: an owner's conversations, pinned first, then latest activity.
CREATE INDEX conversations_user_list_idx ON conversations
    (user_id, is_archived, is_pinned DESC, (coalesce(last_message_at, created_at)) DESC, id DESC)
    WHERE user_id IS NOT NULL;
CREATE INDEX conversations_guest_list_idx ON conversations
    (guest_id, is_archived, is_pinned DESC, (coalesce(last_message_at, created_at)) DESC, id DESC)
    WHERE user_id IS NULL;

CREATE TABLE messages (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id uuid NOT NULL REFERENCES conversations ("id") ON DELETE CASCADE,
    sender text NOT NULL CHECK (sender IN ('user', 'ai', 'system')),
    content text NOT NULL,
    -- SHA-256 of the content: a user message repeated within 30 s is stored once.
    content_hash text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    ai_model text,
    -- The user message an ai reply answers, so a failed reply can be retried.
    reply_to uuid REFERENCES messages ("id") ON DELETE CASCADE,
    is_error boolean NOT NULL DEFAULT false,
    error_details jsonb,
    citations jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(citations) = 'array'),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT messages_error_has_details CHECK (is_error = (error_details IS NOT NULL)),
    CONSTRAINT messages_user_messages_answer_nothing CHECK (sender <> 'user' OR reply_to IS NULL)
);
CREATE INDEX messages_conversation_idx ON messages (conversation_id, created_at, id);
CREATE INDEX messages_reply_to_idx ON messages (reply_to) WHERE reply_to IS NOT NULL;
CREATE INDEX messages_dedup_idx ON messages (conversation_id, content_hash, created_at)
    WHERE sender = 'user';

-- The book. Chapters are numbered from 1 (seed 003); version bumps when the source changes.
CREATE TABLE chapters (
    id integer PRIMARY KEY CHECK (id > 0),
    slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    title text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    version integer NOT NULL DEFAULT 1 CHECK (version > 0),
    source_markdown text NOT NULL,
    source_sha256 text NOT NULL CHECK (source_sha256 ~ '^[0-9a-f]{64}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Chapters split by heading, with a full-text vector for the tutor's retrieval.
CREATE TABLE chapter_sections (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chapter_id integer NOT NULL REFERENCES chapters ("id") ON DELETE CASCADE,
    position integer NOT NULL CHECK (position >= 0),
    heading text NOT NULL,
    anchor text NOT NULL,
    content text NOT NULL,
    search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', heading), 'A') ||
        setweight(to_tsvector('english', content), 'B')) STORED,
    UNIQUE (chapter_id, position)
);
CREATE INDEX chapter_sections_search_idx ON chapter_sections USING GIN (search_vector);

-- The personalization cache's index (seed 003): which stored object holds a user's chapter
-- for one profile hash and chapter version. The object is written before its row.
CREATE TABLE personalized_chapters (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id text NOT NULL REFERENCES "user" ("id") ON DELETE CASCADE,
    chapter_id integer NOT NULL REFERENCES chapters ("id") ON DELETE CASCADE,
    profile_hash text NOT NULL CHECK (profile_hash ~ '^[0-9a-f]{64}$'),
    chapter_version integer NOT NULL CHECK (chapter_version > 0),
    storage_path text NOT NULL UNIQUE,
    engine text NOT NULL CHECK (engine IN ('rule', 'model')),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, chapter_id, profile_hash, chapter_version)
);
-- The janitor finds rows made for an older chapter version.
CREATE INDEX personalized_chapters_chapter_idx ON personalized_chapters (chapter_id, chapter_version);
