//! Chapter personalization: a chapter rewritten for one reader's background.
//!
//! Two engines. The rule-based one ([`rules`]) is the default: the book's directives keep or
//! drop blocks by the reader's profile, deterministically and in milliseconds. The model-based
//! one ([`rewrite`]) runs when a language model is configured: it adapts depth, examples and
//! hardware notes of the rule-based text, within a time budget; when it fails, times out or
//! loses a heading, the rule-based text is served instead. [`cache`] keeps the results in
//! the blob store, indexed by `personalized_chapters`.

pub mod cache;
pub mod fingerprint;
pub mod rewrite;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgExecutor;

pub use self::fingerprint::Fingerprint;
use crate::domain::book::markup::{Facet, Line, scan};
use crate::domain::ids::UserId;
use crate::domain::owner::Owner;
use crate::domain::profile::ProfileHash;
use crate::domain::profile::catalog::{
    Architecture, CatalogValue, Constraint, DeveloperRole, Device, ExperienceYears, Framework, Language,
    LearningGoal, Level, RoboticsExperience, Skill, Tool,
};
use crate::domain::profile::{self, Profile};
use crate::domain::usage::{self, Allowance, Exhausted, UsageLimits};
use crate::error::{ErrorChain, Result};
use crate::infra::model::{ModelClient, Spend, estimate_prompt_tokens};

/// What the rule-based engine knows about a reader: every enumerated facet of their profile,
/// one field per directive key. Free text (the GPU and RAM specifications) is not here: only
/// the model reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    /// `level`: their Python proficiency (or, lacking it, their overall programming level).
    pub level: Level,
    /// `experience`: their overall programming level, if they gave it.
    pub experience: Option<Level>,
    /// `years`: how long they have programmed, if they said.
    pub years: Option<ExperienceYears>,
    /// `robotics`: their robotics experience; `none` when they did not say.
    pub robotics: RoboticsExperience,
    /// `role`: their developer role.
    pub role: DeveloperRole,
    /// `language`: the languages they write.
    pub languages: BTreeSet<Language>,
    /// `skill`: their level per language or framework.
    pub skills: BTreeMap<Skill, Level>,
    /// `framework`: the frameworks they know.
    pub frameworks: BTreeSet<Framework>,
    /// `tool`: the tools they prefer.
    pub tools: BTreeSet<Tool>,
    /// `device`: the devices they have.
    pub devices: BTreeSet<Device>,
    /// `constraint`: what limits what they can run.
    pub constraints: BTreeSet<Constraint>,
    /// `architecture`: the architectures they know.
    pub architectures: BTreeSet<Architecture>,
    /// `goal`: what they want to learn.
    pub goals: BTreeSet<LearningGoal>,
}

impl Reader {
    /// A reader at `level` who said nothing else (a role of `None`, no robotics experience,
    /// empty sets): the start of a reader built field by field.
    pub fn new(level: Level) -> Self {
        Self {
            level,
            experience: None,
            years: None,
            robotics: RoboticsExperience::NoneYet,
            role: DeveloperRole::NoRole,
            languages: BTreeSet::new(),
            skills: BTreeMap::new(),
            frameworks: BTreeSet::new(),
            tools: BTreeSet::new(),
            devices: BTreeSet::new(),
            constraints: BTreeSet::new(),
            architectures: BTreeSet::new(),
            goals: BTreeSet::new(),
        }
    }

    /// The reader a profile describes; `None` before onboarding (no level or no role).
    pub fn of(profile: &Profile) -> Option<Self> {
        let software = &profile.software_context;
        let hardware = &profile.hardware_context;
        Some(Self {
            level: profile.python_proficiency.or(software.experience_level())?,
            experience: software.experience_level(),
            years: software.experience_years(),
            robotics: profile.robotics_experience.unwrap_or(RoboticsExperience::NoneYet),
            role: profile.developer_role?,
            languages: software.languages().clone(),
            skills: software.skill_levels().clone(),
            frameworks: software.frameworks().clone(),
            tools: software.preferred_tools().clone(),
            devices: hardware.devices.clone(),
            constraints: hardware.constraints.clone(),
            architectures: hardware.architecture_familiarity.clone(),
            goals: profile.learning_goals.clone(),
        })
    }

    /// The reader's value of `facet`, as the cache's fingerprint hashes it: catalog spellings,
    /// sets in spelling order, `null` for what they did not give.
    pub fn value(&self, facet: Facet) -> Value {
        fn set<T: CatalogValue>(values: &BTreeSet<T>) -> Value {
            values.iter().map(|v| v.as_str()).collect()
        }
        match facet {
            Facet::Level => json!(self.level.as_str()),
            Facet::Experience => json!(self.experience.map(Level::as_str)),
            Facet::Years => json!(self.years.map(ExperienceYears::as_str)),
            Facet::Robotics => json!(self.robotics.as_str()),
            Facet::Role => json!(self.role.as_str()),
            Facet::Language => set(&self.languages),
            Facet::Skill(skill) => json!(self.skills.get(&skill).map(|l| l.as_str())),
            Facet::Framework => set(&self.frameworks),
            Facet::Tool => set(&self.tools),
            Facet::Device => set(&self.devices),
            Facet::Constraint => set(&self.constraints),
            Facet::Architecture => set(&self.architectures),
            Facet::Goal => set(&self.goals),
        }
    }

    /// The facet and the reader's value of it, for people: "Python level (intermediate)",
    /// "learning goals (Locomotion and Manipulation)".
    pub fn describe(&self, facet: Facet) -> String {
        fn labels<T: CatalogValue>(values: &BTreeSet<T>) -> String {
            rules::list(values.iter().map(|v| v.label())).unwrap_or_else(|| "none given".into())
        }
        fn spellings<T: CatalogValue>(values: &BTreeSet<T>) -> String {
            rules::list(values.iter().map(|v| v.as_str())).unwrap_or_else(|| "none given".into())
        }
        let level = |l: Option<Level>| l.map_or_else(|| "not given".into(), |l| l.as_str().to_lowercase());
        match facet {
            Facet::Level => format!("Python level ({})", level(Some(self.level))),
            Facet::Experience => format!("programming level ({})", level(self.experience)),
            Facet::Years => {
                format!("years of programming ({})", self.years.map_or("not given", |y| y.label()))
            }
            Facet::Robotics => format!("robotics experience ({})", self.robotics.label().to_lowercase()),
            Facet::Role => format!("role ({})", self.role.label()),
            Facet::Language => format!("languages ({})", labels(&self.languages)),
            Facet::Skill(skill) => {
                format!("{} level ({})", skill.label(), level(self.skills.get(&skill).copied()))
            }
            Facet::Framework => format!("frameworks ({})", labels(&self.frameworks)),
            Facet::Tool => format!("tools ({})", spellings(&self.tools)),
            Facet::Device => format!("hardware ({})", spellings(&self.devices)),
            Facet::Constraint => format!("constraints ({})", labels(&self.constraints)),
            Facet::Architecture => format!("architectures ({})", spellings(&self.architectures)),
            Facet::Goal => format!("learning goals ({})", labels(&self.goals)),
        }
    }
}

/// An onboarded reader: what the engines read of them, and the profile it came from.
#[derive(Debug, Clone)]
pub struct ReaderProfile {
    /// What the rule-based engine reads.
    pub reader: Reader,
    /// The whole profile, which the model reads.
    pub profile: Profile,
    /// SHA-256 of the canonical profile (64 hex characters), as the profile function stored
    /// it: the model engine's chapters are keyed by it.
    pub profile_hash: ProfileHash,
}

impl ReaderProfile {
    /// The reader of a stored profile; `None` before onboarding.
    pub fn of(stored: profile::UserProfile) -> Option<Self> {
        if !stored.is_onboarded {
            return None;
        }
        let reader = Reader::of(&stored.profile)?;
        Some(Self { reader, profile: stored.profile, profile_hash: stored.profile_hash })
    }

    /// The fingerprint of this reader's copy of a chapter at `chapter_version` with
    /// `directives`, when `engine` is tried first: for the rule-based engine, its decisions for
    /// this reader; for the model, the whole profile.
    pub fn fingerprint(
        &self,
        directives: &rules::Directives,
        chapter_version: i32,
        engine: Engine,
    ) -> Fingerprint {
        match engine {
            Engine::Rule => {
                Fingerprint::of_rules(chapter_version, &directives.decide(&self.reader), &self.reader)
            }
            Engine::Model => Fingerprint::of_model(chapter_version, &self.profile_hash),
        }
    }
}

/// The user's reader profile; `None` without a profile or before onboarding.
pub async fn reader_profile(db: impl PgExecutor<'_>, user_id: &UserId) -> Result<Option<ReaderProfile>> {
    Ok(profile::find(db, user_id).await?.and_then(ReaderProfile::of))
}

/// Which engine made a personalized chapter (the `engine` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
    /// Set when the rules stood in because the model's allowance is spent: the chapter says
    /// so, and it is not stored, so that the first request after the allowance renews gets
    /// the model's copy.
    pub standing_in: Option<Exhausted>,
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
/// deployment's budget have room for it: the call's estimate is reserved first (for `lease`,
/// the claim's) and what it cost is settled after. Without room, the rule-based engine answers.
pub async fn personalize_within_quota(
    pool: &sqlx::PgPool,
    limits: &UsageLimits,
    user_id: &UserId,
    source: &str,
    profile: &ReaderProfile,
    model: Option<ModelEngine<'_>>,
    lease: Duration,
) -> Result<Personalized> {
    let Some(engine) = model else { return Ok(personalize(source, profile, None).await) };
    // The source is at least as long as the filtered chapter the model will get.
    let estimate =
        estimate_prompt_tokens(&rewrite::messages(&profile.profile, source)) + u64::from(engine.max_tokens);
    let subject = Owner::User(user_id.clone());
    let reservation = match usage::reserve_tokens(pool, &subject, limits, estimate, lease).await? {
        Allowance::Granted(reservation) => reservation,
        Allowance::Spent(why) => {
            tracing::info!(?why, "a model allowance is spent; the rule-based engine personalizes");
            let made = personalize(source, profile, None).await;
            let markdown = with_note(&made.markdown, standing_in_note(why));
            return Ok(Personalized { markdown, standing_in: Some(why), ..made });
        }
    };
    let made = personalize(source, profile, Some(engine)).await;
    if let Err(e) = usage::settle(pool, reservation, made.spend).await {
        tracing::warn!(error = %ErrorChain(&e), "settling a model call failed; its estimate stays counted");
    }
    Ok(made)
}

/// Personalizes `source` for `profile`: by the model when one is given and it succeeds within
/// its budget, else by rule. Never fails: the rule-based engine always has an answer.
pub async fn personalize(
    source: &str,
    profile: &ReaderProfile,
    model: Option<ModelEngine<'_>>,
) -> Personalized {
    let filtered = rules::filter(source, &profile.reader);
    let mut spend = Spend::Nothing;
    if let Some(model) = model {
        let rewritten = tokio::time::timeout(
            model.budget,
            rewrite::rewrite(model.client, &profile.profile, &filtered.markdown, model.max_tokens),
        );
        // Bounded by the budget, so exempt from the request's deadline.
        match crate::infra::deadline::exempt(rewritten).await {
            Ok((cost, Ok(markdown))) => {
                let note = rewrite::note(&profile.profile, &filtered);
                return Personalized {
                    markdown: with_note(&markdown, &note),
                    engine: Engine::Model,
                    spend: cost,
                    standing_in: None,
                };
            }
            Ok((cost, Err(e))) => {
                spend = cost;
                tracing::warn!(error = %e, "model personalization failed; serving the rule-based chapter")
            }
            Err(_) => tracing::warn!(
                budget_ms = model.budget.as_millis() as u64,
                "model personalization ran out of time; serving the rule-based chapter"
            ),
        }
    }
    let note = rules::note(&profile.reader, &filtered);
    Personalized {
        markdown: with_note(&filtered.markdown, &note),
        engine: Engine::Rule,
        spend,
        standing_in: None,
    }
}

/// The line a chapter the rules made in the model's stead opens with.
fn standing_in_note(why: Exhausted) -> &'static str {
    match why {
        Exhausted::Reader => {
            "*You have used today's allowance of the language model, so this chapter is tailored \
             by rule until it renews at midnight UTC.*"
        }
        Exhausted::Deployment => {
            "*The language model has reached today's budget, so this chapter is tailored by rule \
             until it renews at midnight UTC.*"
        }
    }
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
    use super::*;
    use crate::domain::profile::examples::api_example;

    fn parsed(document: Value) -> Profile {
        serde_json::from_value::<profile::ProfileInput>(document).unwrap().parse().unwrap()
    }

    #[test]
    fn the_reader_holds_every_enumerated_facet_of_the_profile() {
        let reader = Reader::of(&parsed(api_example())).unwrap();
        assert_eq!(reader.level, Level::Intermediate);
        assert_eq!(reader.experience, Some(Level::Intermediate));
        assert_eq!(reader.years, Some(ExperienceYears::ThreeToFive));
        assert_eq!(reader.robotics, RoboticsExperience::SimulationOnly);
        assert_eq!(reader.role, DeveloperRole::Backend);
        assert_eq!(reader.languages, BTreeSet::from([Language::Python, Language::Cpp]));
        assert_eq!(reader.skills.get(&Skill::Framework(Framework::Ros2)), Some(&Level::Beginner));
        assert_eq!(reader.frameworks, BTreeSet::from([Framework::Ros2, Framework::PyTorch]));
        assert_eq!(reader.tools, BTreeSet::from([Tool::VsCode, Tool::Ros]));
        assert_eq!(reader.devices, BTreeSet::from([Device::Simulation, Device::RobotArm, Device::Jetson]));
        assert_eq!(reader.constraints, BTreeSet::from([Constraint::NoInternet]));
        assert_eq!(reader.architectures, BTreeSet::from([Architecture::X86_64, Architecture::Cuda]));
        assert_eq!(reader.goals, BTreeSet::from([LearningGoal::Simulation, LearningGoal::Manipulation]));

        let mut document = api_example();
        document.as_object_mut().unwrap().remove("python_proficiency");
        assert_eq!(
            Reader::of(&parsed(document.clone())).unwrap().level,
            Level::Intermediate,
            "experience stands in"
        );
        document["software_context"].as_object_mut().unwrap().remove("experience_level");
        assert!(Reader::of(&parsed(document)).is_none(), "no level, no reader");
        let mut no_role = api_example();
        no_role.as_object_mut().unwrap().remove("developer_role");
        assert!(Reader::of(&parsed(no_role)).is_none(), "not onboarded");
    }

    #[test]
    fn facets_are_valued_and_described_from_the_catalog() {
        let reader = Reader::of(&parsed(api_example())).unwrap();
        let ros2 = Facet::Skill(Skill::Framework(Framework::Ros2));
        let cpp = Facet::Skill(Skill::Language(Language::Cpp));
        assert_eq!(reader.value(Facet::Goal), json!(["manipulation", "simulation"]));
        assert_eq!(reader.value(ros2), json!("Beginner"));
        assert_eq!(reader.value(cpp), Value::Null);
        assert_eq!(reader.value(Facet::Role), json!("Backend Developer"));
        assert_eq!(reader.describe(Facet::Level), "Python level (intermediate)");
        assert_eq!(reader.describe(ros2), "ROS 2 level (beginner)");
        assert_eq!(reader.describe(cpp), "C++ level (not given)");
        assert_eq!(reader.describe(Facet::Language), "languages (C++ and Python)");
        assert_eq!(reader.describe(Facet::Goal), "learning goals (Manipulation and Simulation)");
        assert_eq!(reader.describe(Facet::Constraint), "constraints (No or unreliable internet)");
        assert_eq!(reader.describe(Facet::Robotics), "robotics experience (simulation only)");
        assert_eq!(Reader::new(Level::Beginner).describe(Facet::Tool), "tools (none given)");
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
