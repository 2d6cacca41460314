//! The reader's profile: their software and hardware background (the guest-chat, users-table and personalization models), the two
//! onboarding answers, and the hash that changes with any of it.
//!
//! A request body is read as a [`ProfileInput`] (the wire shape: strings, the users-table model's language
//! objects) and parsed into a [`Profile`], whose every enumerated value comes from the
//! [`catalog`]. Only a `Profile` is stored: its serialization is the canonical form kept in the
//! JSONB columns, and its [`ProfileHash`] identifies it (the model engine's chapters are keyed
//! by it; the rule engine's by only the facets a chapter reads).

pub mod catalog;
pub mod examples;
mod input;
mod store;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use self::catalog::{
    Architecture, CatalogValue, Constraint, DeveloperRole, Device, ExperienceYears, Framework, Language,
    LearningGoal, Level, RoboticsExperience, Skill, Tool,
};
pub use self::input::{
    HardwareContextInput, LanguageInput, LeveledLanguage, ProfileInput, ProfilePatch, SoftwareContextInput,
    SpecificationsInput,
};
#[cfg(any(test, feature = "test-util"))]
pub use self::store::overwrite;
pub use self::store::{Change, Saved, StoredProfile, UserProfile, find, find_all, save};
use crate::error::{Error, Result};

/// The longest free text of `hardware_context.specifications`, in characters.
pub const SPEC_TEXT_MAX_CHARS: usize = 64;

/// A reader's background, parsed: every value is from the catalog or bounded, every set is
/// deduplicated and sorted by spelling. Its serialization is the canonical stored form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = Background)]
pub struct Profile {
    /// Languages, skills and tools.
    #[schema(value_type = SoftwareContextInput)]
    pub software_context: SoftwareContext,
    /// Devices, specifications and constraints.
    #[schema(value_type = HardwareContextInput)]
    pub hardware_context: HardwareContext,
    /// Onboarding answer (the onboarding model); immutable once onboarded.
    #[schema(required)]
    pub python_proficiency: Option<Level>,
    /// Onboarding answer (the onboarding model); immutable once onboarded.
    #[schema(required)]
    pub developer_role: Option<DeveloperRole>,
    /// The personalization model.
    #[schema(required)]
    pub robotics_experience: Option<RoboticsExperience>,
    /// The personalization model.
    #[schema(value_type = Vec<String>)]
    pub learning_goals: BTreeSet<LearningGoal>,
}

/// The software side of a background. It always names at least one language or skill level
/// (the personalization model), which is why its fields are read through methods.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SoftwareContext {
    languages: BTreeSet<Language>,
    skill_levels: BTreeMap<Skill, Level>,
    experience_level: Option<Level>,
    experience_years: Option<ExperienceYears>,
    preferred_tools: BTreeSet<Tool>,
    frameworks: BTreeSet<Framework>,
}

impl SoftwareContext {
    /// The languages the reader writes.
    pub fn languages(&self) -> &BTreeSet<Language> {
        &self.languages
    }

    /// The reader's level per language or framework.
    pub fn skill_levels(&self) -> &BTreeMap<Skill, Level> {
        &self.skill_levels
    }

    /// The reader's overall programming level.
    pub fn experience_level(&self) -> Option<Level> {
        self.experience_level
    }

    /// How long the reader has programmed.
    pub fn experience_years(&self) -> Option<ExperienceYears> {
        self.experience_years
    }

    /// The tools the reader prefers.
    pub fn preferred_tools(&self) -> &BTreeSet<Tool> {
        &self.preferred_tools
    }

    /// The frameworks the reader knows.
    pub fn frameworks(&self) -> &BTreeSet<Framework> {
        &self.frameworks
    }
}

/// The hardware side of a background.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HardwareContext {
    /// Hardware the reader can use.
    pub devices: BTreeSet<Device>,
    /// Free-text details of the reader's machine.
    pub specifications: Specifications,
    /// What limits what the reader can run.
    pub constraints: BTreeSet<Constraint>,
    /// Architectures the reader knows.
    pub architecture_familiarity: BTreeSet<Architecture>,
}

/// The guest-chat model's `specifications`: `{"gpu": "RTX3060", "ram": "16GB"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Specifications {
    /// GPU model.
    pub gpu: Option<SpecText>,
    /// Memory.
    pub ram: Option<SpecText>,
}

/// A short free-text specification: at most [`SPEC_TEXT_MAX_CHARS`] characters as sent (the
/// contract's `maxLength`), trimmed, not blank, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SpecText(String);

impl SpecText {
    /// Parses what a person typed.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let text = raw.trim();
        match text.chars().count() {
            _ if raw.chars().count() > SPEC_TEXT_MAX_CHARS => {
                Err(format!("must be at most {SPEC_TEXT_MAX_CHARS} characters"))
            }
            0 => Err("must not be blank".into()),
            _ if text.chars().any(char::is_control) => Err("must not contain control characters".into()),
            _ => Ok(Self(text.to_owned())),
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Profile {
    /// The onboarding model: onboarded exactly when both onboarding answers are given.
    pub fn is_onboarded(&self) -> bool {
        self.python_proficiency.is_some() && self.developer_role.is_some()
    }

    /// The hash of this background; see [`ProfileHash`].
    pub fn hash(&self) -> ProfileHash {
        ProfileHash::of(self)
    }

    /// The onboarding model: once onboarded, the two answers stay as they are. Sending the same value is
    /// fine; changing or removing either is a 409 `immutable_field`.
    pub fn ensure_answers_kept(&self, next: &Profile) -> Result<()> {
        if !self.is_onboarded() {
            return Ok(());
        }
        let mut changed = Vec::new();
        if next.python_proficiency != self.python_proficiency {
            changed.push("python_proficiency");
        }
        if next.developer_role != self.developer_role {
            changed.push("developer_role");
        }
        if changed.is_empty() {
            return Ok(());
        }
        Err(Error::Conflict {
            code: crate::error::Code::ImmutableField,
            message: format!("{} cannot change once onboarding is complete", changed.join(" and ")),
        })
    }

    /// The profile as a JSON document in the input shape: what a merge patch applies to.
    pub fn to_document(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a profile serializes: its maps have string keys")
    }
}

/// SHA-256, as 64 lowercase hex characters, of a profile's canonical form, so it changes exactly
/// when the background does. The model engine's cache key is made from it (the model reads the
/// whole profile); the rule engine's reads only the facets a chapter mentions.
///
/// What goes in: a scheme tag (`primer-profile/1`, bumped if the canonical form ever changes)
/// and then the [`Profile`] serialized as compact JSON — `software_context` (languages,
/// skill_levels, experience_level, experience_years, preferred_tools, frameworks),
/// `hardware_context` (devices, specifications.gpu, specifications.ram, constraints,
/// architecture_familiarity), `python_proficiency`, `developer_role`, `robotics_experience`
/// and `learning_goals`. Keys come in a fixed order (struct order; skill levels sorted by
/// skill), arrays are deduplicated and sorted by spelling, free text is trimmed, and an unset
/// value is `null`, so key order, array order and duplicates in a request never change it.
///
/// What stays out: `is_onboarded` (it follows from the two answers, which are in), the
/// timestamps, the user id (the cache is keyed by user as well) and the catalog's labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct ProfileHash(String);

impl ProfileHash {
    const SCHEME: &'static [u8] = b"primer-profile/1\n";

    /// The hash of `profile`.
    pub fn of(profile: &Profile) -> Self {
        let canonical = serde_json::to_vec(profile).expect("a profile serializes: its maps have string keys");
        let digest = Sha256::new().chain_update(Self::SCHEME).chain_update(&canonical).finalize();
        Self(hex::encode(digest))
    }

    /// The hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::examples::api_example;
    use serde_json::json;

    use super::*;

    fn parse(document: serde_json::Value) -> Result<Profile> {
        serde_json::from_value::<ProfileInput>(document).expect("the input shape").parse()
    }

    #[test]
    fn the_hash_is_64_hex_characters() {
        let hash = parse(api_example()).unwrap().hash();
        assert_eq!(hash.as_str().len(), 64);
        assert!(hash.as_str().chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    }

    #[test]
    fn the_hash_ignores_key_order_array_order_and_duplicates() {
        let reordered = json!({
            "learning_goals": ["manipulation", "simulation", "manipulation"],
            "robotics_experience": "simulation_only",
            "developer_role": "Backend Developer",
            "python_proficiency": "Intermediate",
            "hardware_context": {
                "architecture_familiarity": ["CUDA", "x86_64", "CUDA"],
                "constraints": ["NoInternet", "NoInternet"],
                "specifications": {"ram": "16GB", "gpu": "  RTX3060 "},
                "devices": ["Jetson", "RobotArm", "Simulation"]
            },
            "software_context": {
                "frameworks": ["PyTorch", "ROS 2"],
                "preferred_tools": ["ROS", "VSCode", "VSCode"],
                "experience_years": "3-5",
                "experience_level": "Intermediate",
                "skill_levels": {"ROS 2": "Beginner"},
                // The users-table model's form names the same Python level.
                "languages": ["Cpp", {"language": "Python", "level": "Intermediate"}, "Cpp"]
            }
        });
        assert_eq!(parse(reordered).unwrap().hash(), parse(api_example()).unwrap().hash());
    }

    #[test]
    fn every_field_that_matters_changes_the_hash() {
        let base = parse(api_example()).unwrap().hash();
        let changes: [(&str, serde_json::Value); 15] = [
            ("/software_context/languages", json!(["Python"])),
            ("/software_context/skill_levels/Python", json!("Advanced")),
            ("/software_context/experience_level", json!("Advanced")),
            ("/software_context/experience_years", json!("5-10")),
            ("/software_context/preferred_tools", json!(["VSCode"])),
            ("/software_context/frameworks", json!(["ROS 2"])),
            ("/hardware_context/devices", json!(["Simulation"])),
            ("/hardware_context/specifications/gpu", json!("RTX4090")),
            ("/hardware_context/specifications/ram", json!("32GB")),
            ("/hardware_context/constraints", json!([])),
            ("/hardware_context/architecture_familiarity", json!(["ARM64"])),
            ("/python_proficiency", json!("Advanced")),
            ("/developer_role", json!("Frontend Developer")),
            ("/robotics_experience", json!("real_hardware")),
            ("/learning_goals", json!(["locomotion"])),
        ];
        for (pointer, value) in changes {
            let mut document = api_example();
            *document.pointer_mut(pointer).unwrap() = value;
            assert_ne!(parse(document).unwrap().hash(), base, "changing {pointer} kept the hash");
        }
    }

    #[test]
    fn an_unset_value_hashes_apart_from_a_set_one() {
        let mut without_role = api_example();
        without_role.as_object_mut().unwrap().remove("developer_role");
        assert_ne!(parse(without_role).unwrap().hash(), parse(api_example()).unwrap().hash());
    }

    #[test]
    fn onboarding_answers_are_kept_once_given() {
        let onboarded = parse(api_example()).unwrap();
        assert!(onboarded.is_onboarded());
        assert!(onboarded.ensure_answers_kept(&onboarded.clone()).is_ok());

        let mut changed = onboarded.clone();
        changed.developer_role = Some(DeveloperRole::Frontend);
        let error = onboarded.ensure_answers_kept(&changed).unwrap_err();
        assert_eq!(error.code(), crate::error::Code::ImmutableField);
        assert!(error.to_string().starts_with("developer_role"), "{error}");

        let mut removed = onboarded.clone();
        removed.python_proficiency = None;
        assert_eq!(
            onboarded.ensure_answers_kept(&removed).unwrap_err().code(),
            crate::error::Code::ImmutableField
        );

        // Before onboarding, anything goes.
        let mut halfway = onboarded.clone();
        halfway.developer_role = None;
        assert!(!halfway.is_onboarded());
        assert!(halfway.ensure_answers_kept(&changed).is_ok());
    }

    #[test]
    fn spec_text_is_trimmed_and_bounded() {
        assert_eq!(SpecText::parse("  RTX 3060 ").unwrap().as_str(), "RTX 3060");
        assert!(SpecText::parse(&"x".repeat(SPEC_TEXT_MAX_CHARS)).is_ok());
        assert!(SpecText::parse(&"x".repeat(SPEC_TEXT_MAX_CHARS + 1)).is_err());
        // The bound is on what was sent, as the contract's maxLength says, trimmed or not.
        assert!(SpecText::parse(&format!(" {}", "x".repeat(SPEC_TEXT_MAX_CHARS))).is_err());
        // Characters, not bytes: 64 multi-byte characters fit.
        assert!(SpecText::parse(&"é".repeat(SPEC_TEXT_MAX_CHARS)).is_ok());
        assert!(SpecText::parse("16\nGB").is_err());
    }

    #[test]
    fn the_canonical_form_is_the_documented_one() {
        let document = parse(api_example()).unwrap().to_document();
        assert_eq!(document["software_context"]["languages"], json!(["Cpp", "Python"]));
        assert_eq!(
            document["software_context"]["skill_levels"],
            json!({"Python": "Intermediate", "ROS 2": "Beginner"})
        );
        assert_eq!(document["hardware_context"]["devices"], json!(["Jetson", "RobotArm", "Simulation"]));
        assert_eq!(document["hardware_context"]["specifications"], json!({"gpu": "RTX3060", "ram": "16GB"}));
        assert_eq!(document["learning_goals"], json!(["manipulation", "simulation"]));
        // The canonical form is itself a valid input that parses to the same profile.
        assert_eq!(parse(document).unwrap(), parse(api_example()).unwrap());
    }
}
