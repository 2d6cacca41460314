//! Chapter personalization: a chapter rewritten for one reader's background.
//!
//! Two engines. The rule-based one ([`rules`]) is the default: the book's directives keep or
//! drop blocks by the reader's profile, deterministically and in milliseconds. The model-based
//! one ([`rewrite`]) runs when a language model is configured: it adapts depth, examples and
//! hardware notes of the rule-based text, within a time budget; when it fails, times out or
//! loses a heading, the rule-based text is served instead. [`cache`] keeps the results in
//! the blob store, indexed by `personalized_chapters`.

pub mod cache;
pub mod rewrite;
pub mod rules;

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sqlx::PgExecutor;

use crate::book::markup::{Line, scan};
use crate::error::{ErrorChain, Result};
use crate::model::{ModelClient, Spend, estimate_prompt_tokens};
use crate::profile::catalog::{CatalogValue, Device, Language, Level, RoboticsExperience};
use crate::usage::{self, Allowance, Subject, UsageLimits};

/// What personalization needs to know about a reader, from their profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    /// Their Python proficiency (or, lacking it, their general experience level).
    pub level: Level,
    /// Their robotics experience; `none` when they did not say.
    pub robotics: RoboticsExperience,
    /// The devices they have that the book knows.
    pub devices: BTreeSet<Device>,
    /// The languages they write that the book shows code in.
    pub languages: BTreeSet<Language>,
}

impl Reader {
    /// A phrase for the note: "an intermediate reader, new to robotics, writing Python, with
    /// Jetson and GPU".
    pub fn describe(&self) -> String {
        let article = if self.level == Level::Beginner { "a" } else { "an" };
        let mut parts = vec![format!("{article} {} reader", self.level.as_str().to_lowercase())];
        parts.push(
            match self.robotics {
                RoboticsExperience::NoneYet => "new to robotics",
                RoboticsExperience::SimulationOnly => "experienced in simulation",
                RoboticsExperience::RealHardware => "experienced with real robots",
            }
            .into(),
        );
        if let Some(languages) = rules::list(self.languages.iter().map(|l| l.label())) {
            parts.push(format!("writing {languages}"));
        }
        if let Some(devices) = rules::list(self.devices.iter().map(|d| d.as_str())) {
            parts.push(format!("with {devices}"));
        }
        parts.join(", ")
    }
}

/// An onboarded reader and the hash of the profile they were read from.
#[derive(Debug, Clone)]
pub struct ReaderProfile {
    /// The reader.
    pub reader: Reader,
    /// SHA-256 of the canonical profile (64 hex characters): the cache key's part that
    /// changes with the profile.
    pub profile_hash: String,
}

/// The columns of `user_profiles` personalization reads.
#[derive(sqlx::FromRow)]
struct ProfileRow {
    is_onboarded: bool,
    python_proficiency: Option<String>,
    experience_level: Option<String>,
    robotics_experience: Option<String>,
    languages: Option<Value>,
    devices: Option<Value>,
    profile_hash: String,
}

/// The user's reader profile; `None` without a profile or before onboarding.
pub async fn reader_profile(db: impl PgExecutor<'_>, user_id: &str) -> Result<Option<ReaderProfile>> {
    let row: Option<ProfileRow> = sqlx::query_as(
        "SELECT is_onboarded, python_proficiency, software_context->>'experience_level' AS experience_level,
                robotics_experience, software_context->'languages' AS languages,
                hardware_context->'devices' AS devices, profile_hash
         FROM user_profiles WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    Ok(row.filter(|r| r.is_onboarded).and_then(ProfileRow::into_reader_profile))
}

impl ProfileRow {
    fn into_reader_profile(self) -> Option<ReaderProfile> {
        let level = [&self.python_proficiency, &self.experience_level]
            .into_iter()
            .find_map(|v| v.as_deref().and_then(|v| Level::parse(v).ok()))?;
        let robotics = self.robotics_experience.as_deref().and_then(|v| RoboticsExperience::parse(v).ok());
        let reader = Reader {
            level,
            robotics: robotics.unwrap_or(RoboticsExperience::NoneYet),
            devices: names(self.devices.as_ref()).filter_map(|n| Device::parse(n).ok()).collect(),
            languages: names(self.languages.as_ref()).filter_map(|n| Language::parse(n).ok()).collect(),
        };
        Some(ReaderProfile { reader, profile_hash: self.profile_hash })
    }
}

/// The names in a stored JSON array of catalog names (the profile function stores them so).
fn names(array: Option<&Value>) -> impl Iterator<Item = &str> {
    array.and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
}

/// Which engine made a personalized chapter (the `engine` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// The book's directives, applied by rule.
    Rule,
    /// The language model, on top of the rules.
    Model,
}

impl Engine {
    /// The name stored and shown: `rule` or `model`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rule => "rule",
            Self::Model => "model",
        }
    }

    /// The engine named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Rule, Self::Model].into_iter().find(|e| e.as_str() == name)
    }
}

/// A chapter made for one reader.
#[derive(Debug, Clone)]
pub struct Personalized {
    /// The markdown, with the "tailored for you" note under its title.
    pub markdown: String,
    /// Who made it.
    pub engine: Engine,
    /// What asking the model cost (nothing when it was not asked).
    pub spend: Spend,
}

/// A language model to try first, and how long it may take.
#[derive(Debug, Clone, Copy)]
pub struct ModelEngine<'a> {
    /// The client.
    pub client: &'a ModelClient,
    /// The time after which the rule-based text is served instead.
    pub budget: Duration,
    /// The longest chapter the model may write, in tokens.
    pub max_tokens: u32,
}

/// [`personalize`] for `user_id`, with the model only when the user's daily tokens and the
/// deployment's budget have room for it: the call's estimate is reserved first and what it
/// cost is settled after. Without room, the rule-based engine answers.
pub async fn personalize_within_quota(
    pool: &sqlx::PgPool,
    limits: &UsageLimits,
    user_id: &str,
    source: &str,
    reader: &Reader,
    model: Option<ModelEngine<'_>>,
) -> Result<Personalized> {
    let Some(engine) = model else { return Ok(personalize(source, reader, None).await) };
    // The source is at least as long as the filtered chapter the model will get.
    let estimate = estimate_prompt_tokens(&rewrite::messages(reader, source)) + u64::from(engine.max_tokens);
    let subject = Subject::User(user_id.to_owned());
    let reservation = match usage::reserve_tokens(pool, &subject, limits, estimate).await? {
        Allowance::Granted(reservation) => reservation,
        Allowance::Spent(why) => {
            tracing::info!(?why, "a model allowance is spent; the rule-based engine personalizes");
            return Ok(personalize(source, reader, None).await);
        }
    };
    let made = personalize(source, reader, Some(engine)).await;
    if let Err(e) = usage::settle(pool, reservation, made.spend).await {
        tracing::warn!(error = %ErrorChain(&e), "settling a model call failed; its estimate stays counted");
    }
    Ok(made)
}

/// Personalizes `source` for `reader`: by the model when one is given and it succeeds within
/// its budget, else by rule. Never fails: the rule-based engine always has an answer.
pub async fn personalize(source: &str, reader: &Reader, model: Option<ModelEngine<'_>>) -> Personalized {
    let filtered = rules::filter(source, reader);
    let mut spend = Spend::Nothing;
    if let Some(model) = model {
        let rewritten = tokio::time::timeout(
            model.budget,
            rewrite::rewrite(model.client, reader, &filtered.markdown, model.max_tokens),
        );
        match rewritten.await {
            Ok((cost, Ok(markdown))) => {
                let note = rewrite::note(reader, &filtered);
                return Personalized {
                    markdown: with_note(&markdown, &note),
                    engine: Engine::Model,
                    spend: cost,
                };
            }
            Ok((cost, Err(e))) => {
                spend = cost;
                tracing::warn!(error = %e, "model personalization failed; serving the rule-based chapter")
            }
            Err(_) => {
                // The endpoint may have done (and billed) the work.
                spend = Spend::Unknown;
                tracing::warn!(
                    budget_ms = model.budget.as_millis() as u64,
                    "model personalization ran out of time; serving the rule-based chapter"
                )
            }
        }
    }
    let note = rules::note(reader, &filtered);
    Personalized { markdown: with_note(&filtered.markdown, &note), engine: Engine::Rule, spend }
}

/// `markdown` with `note` (one paragraph) just under its first `#` title, or on top when it
/// has none.
pub fn with_note(markdown: &str, note: &str) -> String {
    let mut offset = 0;
    for line in scan(markdown) {
        offset += line.raw.len();
        if let Line::Heading { level: 1, .. } = line.kind {
            let (head, body) = markdown.split_at(offset);
            let newline = if head.ends_with('\n') { "" } else { "\n" };
            return format!("{head}{newline}\n{note}\n{body}");
        }
    }
    format!("{note}\n\n{markdown}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(python: Option<&str>, experience: Option<&str>) -> ProfileRow {
        ProfileRow {
            is_onboarded: true,
            python_proficiency: python.map(Into::into),
            experience_level: experience.map(Into::into),
            robotics_experience: Some("simulation_only".into()),
            languages: Some(json!(["Cpp", "Python", "Cobol"])),
            devices: Some(json!(["Jetson", "GPU", "Toaster"])),
            profile_hash: "ab".repeat(32),
        }
    }

    #[test]
    fn the_reader_comes_from_the_profile_columns() {
        let profile = row(Some("Intermediate"), Some("Advanced")).into_reader_profile().unwrap();
        let reader = profile.reader;
        assert_eq!(reader.level, Level::Intermediate, "python proficiency comes first");
        assert_eq!(reader.robotics, RoboticsExperience::SimulationOnly);
        assert_eq!(reader.languages, BTreeSet::from([Language::Python, Language::Cpp]));
        assert_eq!(reader.devices, BTreeSet::from([Device::Jetson, Device::Gpu]));
        assert_eq!(
            reader.describe(),
            "an intermediate reader, experienced in simulation, writing C++ and Python, with GPU and Jetson"
        );
        let fallback = row(None, Some("Advanced")).into_reader_profile().unwrap();
        assert_eq!(fallback.reader.level, Level::Advanced, "experience level stands in");
        assert!(row(None, None).into_reader_profile().is_none());
    }

    #[test]
    fn the_note_goes_under_the_title() {
        assert_eq!(with_note("# T\n\nText\n", "> n"), "# T\n\n> n\n\nText\n");
        assert_eq!(with_note("```\n# code\n```\n# T", "> n"), "```\n# code\n```\n# T\n\n> n\n");
        assert_eq!(with_note("Text\n", "> n"), "> n\n\nText\n");
    }

    #[test]
    fn engines_have_stable_names() {
        for engine in [Engine::Rule, Engine::Model] {
            assert_eq!(Engine::parse(engine.as_str()), Some(engine));
        }
        assert_eq!(serde_json::to_value(Engine::Model).unwrap(), json!("model"));
    }
}
