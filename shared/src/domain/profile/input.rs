//! The wire shape of a profile and its parsing into a [`Profile`].
//!
//! Shape errors (a string where an array belongs, an unknown key) are serde's and become a 400;
//! everything else is parsed here, collecting every invalid value by its JSON path into one
//! 422.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::catalog::{CatalogValue, Skill};
use super::{HardwareContext, Language, Level, Profile, SoftwareContext, SpecText, Specifications};
use crate::error::{FieldErrors, Result};

/// A profile as a client sends it to `PUT /api/profile` (and what a merge patch must produce).
/// Enumerated values are plain strings here so that an unknown one is a 422 naming its path.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(
    description = "A full profile, as sent to `PUT /api/profile`. Unknown keys are a 400; `is_onboarded`, `profile_hash`, `created_at` and `updated_at` (as a GET shows them) are accepted and ignored. Every invalid value is listed in one 422 by its JSON path.",
    examples(super::examples::api_example)
)]
pub struct ProfileInput {
    /// Required; must name at least one language or skill level.
    #[serde(default, deserialize_with = "object")]
    #[schema(value_type = SoftwareContextInput, required)]
    pub software_context: Option<SoftwareContextInput>,
    /// Required, may be `{}`.
    #[serde(default, deserialize_with = "object")]
    #[schema(value_type = HardwareContextInput, required)]
    pub hardware_context: Option<HardwareContextInput>,
    /// A level; immutable once onboarded.
    #[schema(value_type = Option<Level>)]
    pub python_proficiency: Option<String>,
    /// A role; immutable once onboarded.
    #[schema(value_type = Option<super::DeveloperRole>)]
    pub developer_role: Option<String>,
    /// How far the reader has gone with robots.
    #[schema(value_type = Option<super::RoboticsExperience>)]
    pub robotics_experience: Option<String>,
    /// Learning goals; the values are in `GET /api/profile/options`.
    pub learning_goals: Option<Vec<String>>,
    // The rest of what GET shows is the server's to compute: accepted and ignored, so a client
    // may send back the profile it read.
    /// Accepted and ignored.
    #[serde(default, rename = "is_onboarded")]
    #[schema(value_type = Value)]
    pub(super) _is_onboarded: Option<IgnoredAny>,
    /// Accepted and ignored.
    #[serde(default, rename = "profile_hash")]
    #[schema(value_type = Value)]
    pub(super) _profile_hash: Option<IgnoredAny>,
    /// Accepted and ignored.
    #[serde(default, rename = "created_at")]
    #[schema(value_type = Value)]
    pub(super) _created_at: Option<IgnoredAny>,
    /// Accepted and ignored.
    #[serde(default, rename = "updated_at")]
    #[schema(value_type = Value)]
    pub(super) _updated_at: Option<IgnoredAny>,
}

/// The body of `PATCH /api/profile`: a JSON merge patch (RFC 7396) of a [`ProfileInput`],
/// read as a JSON value and applied to the stored profile before it is parsed. This type only
/// names its schema.
pub struct ProfilePatch;

impl utoipa::PartialSchema for ProfilePatch {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        let object = || ObjectBuilder::new().schema_type(Type::Object);
        let or_null = |name: &str| {
            OneOfBuilder::new()
                .item(utoipa::openapi::Ref::from_schema_name(name))
                .item(ObjectBuilder::new().schema_type(Type::Null))
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("A JSON merge patch (RFC 7396) of `ProfileInput`: nested objects are merged and a `null` member is removed."))
            .property("software_context", object())
            .property("hardware_context", object())
            .property("python_proficiency", or_null(&<Level as utoipa::ToSchema>::name()))
            .property("developer_role", or_null(&<super::DeveloperRole as utoipa::ToSchema>::name()))
            .property("robotics_experience", or_null(&<super::RoboticsExperience as utoipa::ToSchema>::name()))
            .property("learning_goals", <Option<Vec<String>>>::schema())
            .examples([serde_json::json!({
                "hardware_context": {"specifications": {"gpu": "RTX4090"}},
                "learning_goals": ["locomotion"],
            })])
            .into()
    }
}

impl utoipa::ToSchema for ProfilePatch {}

/// An optional nested object, read only from a JSON object (or `null`): serde's derived
/// structs also take an array of their fields in order, which the contract does not allow.
fn object<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    match Option::<serde_json::Map<String, serde_json::Value>>::deserialize(d)? {
        None => Ok(None),
        Some(map) => T::deserialize(serde_json::Value::Object(map)).map(Some).map_err(de::Error::custom),
    }
}

/// `software_context` as sent.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(
    as = SoftwareContext,
    description = "Must name at least one language or skill level. Enumerated values come from `GET /api/profile/options`."
)]
pub struct SoftwareContextInput {
    /// Names, or the users-table model's `{"language", "level"}` objects.
    #[schema(inline)]
    pub languages: Option<Vec<LanguageInput>>,
    /// Skill (language or framework) to level.
    pub skill_levels: Option<BTreeMap<String, String>>,
    /// A level.
    pub experience_level: Option<String>,
    /// A range such as `3-5`.
    #[schema(examples("3-5"))]
    pub experience_years: Option<String>,
    /// Tools.
    pub preferred_tools: Option<Vec<String>>,
    /// Frameworks.
    pub frameworks: Option<Vec<String>>,
}

/// `hardware_context` as sent.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = HardwareContext)]
pub struct HardwareContextInput {
    /// Devices.
    pub devices: Option<Vec<String>>,
    /// Free text, each value at most 64 characters; blank counts as absent.
    #[serde(default, deserialize_with = "object")]
    #[schema(inline)]
    pub specifications: Option<SpecificationsInput>,
    /// Constraints.
    pub constraints: Option<Vec<String>>,
    /// Architectures.
    pub architecture_familiarity: Option<Vec<String>>,
}

/// `hardware_context.specifications` as sent; blank text counts as absent.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecificationsInput {
    /// GPU model.
    #[schema(max_length = 64)]
    pub gpu: Option<String>,
    /// Memory.
    #[schema(max_length = 64)]
    pub ram: Option<String>,
}

/// One entry of `software_context.languages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LanguageInput {
    /// `"Python"` (the guest-chat model).
    Name(String),
    /// `{"language": "Python", "level": "Intermediate"}` (the users-table model).
    WithLevel(LeveledLanguage),
}

/// A name, or the users-table model's `{"language", "level"}`.
impl utoipa::PartialSchema for LanguageInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(String::schema())
            .item(LeveledLanguage::schema())
            .into()
    }
}

impl utoipa::ToSchema for LanguageInput {}

/// The users-table model form; stored as a name plus a `skill_levels` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeveledLanguage {
    /// The language.
    pub language: String,
    /// The reader's level in it.
    pub level: Option<String>,
}

// By hand rather than `#[serde(untagged)]`, whose error names a Rust type instead of saying
// what is expected.
impl<'de> Deserialize<'de> for LanguageInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;

        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = LanguageInput;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#"a language name or a {"language", "level"} object"#)
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<LanguageInput, E> {
                Ok(LanguageInput::Name(name.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LanguageInput, A::Error> {
                let leveled = LeveledLanguage::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(LanguageInput::WithLevel(leveled))
            }
        }

        deserializer.deserialize_any(EntryVisitor)
    }
}

impl ProfileInput {
    /// Parses the whole profile; the 422 lists every invalid value by its JSON path.
    pub fn parse(&self) -> Result<Profile> {
        let mut errors = FieldErrors::new();
        let software_context = match &self.software_context {
            Some(software) => software.parse(&mut errors),
            None => {
                errors.add("software_context", "is required");
                SoftwareContext::default()
            }
        };
        let hardware_context = match &self.hardware_context {
            Some(hardware) => hardware.parse(&mut errors),
            None => {
                errors.add("hardware_context", "is required");
                HardwareContext::default()
            }
        };
        let profile = Profile {
            software_context,
            hardware_context,
            python_proficiency: one(&mut errors, "python_proficiency", &self.python_proficiency),
            developer_role: one(&mut errors, "developer_role", &self.developer_role),
            robotics_experience: one(&mut errors, "robotics_experience", &self.robotics_experience),
            learning_goals: set(&mut errors, "learning_goals", &self.learning_goals),
        };
        // Until here `profile` may be partial; it only leaves when nothing was wrong.
        errors.finish()?;
        Ok(profile)
    }
}

impl SoftwareContextInput {
    fn parse(&self, errors: &mut FieldErrors) -> SoftwareContext {
        let languages_sent = self.languages.as_deref().unwrap_or_default();
        let levels_sent = self.skill_levels.as_ref();
        if languages_sent.is_empty() && levels_sent.is_none_or(BTreeMap::is_empty) {
            errors.add("software_context", "must name at least one language or skill level");
        }

        let mut languages = BTreeSet::new();
        let mut leveled = Vec::new();
        for (i, entry) in languages_sent.iter().enumerate() {
            let path = format!("software_context.languages[{i}]");
            match entry {
                LanguageInput::Name(name) => languages.extend(errors.check(&path, Language::parse(name))),
                LanguageInput::WithLevel(LeveledLanguage { language, level }) => {
                    let language = errors.check(&format!("{path}.language"), Language::parse(language));
                    let level_path = format!("{path}.level");
                    let level = level.as_deref().and_then(|l| errors.check(&level_path, Level::parse(l)));
                    languages.extend(language);
                    if let (Some(language), Some(level)) = (language, level) {
                        leveled.push((level_path, language, level));
                    }
                }
            }
        }

        let mut skill_levels = BTreeMap::new();
        for (name, level) in levels_sent.into_iter().flatten() {
            let path = key_path("software_context.skill_levels", name);
            let skill = errors.check(&path, Skill::parse(name));
            let level = errors.check(&path, Level::parse(level));
            if let (Some(skill), Some(level)) = (skill, level) {
                skill_levels.insert(skill, level);
            }
        }
        // The users-table model's level is stored as a skill level; two different levels for one language
        // cannot both be true.
        for (path, language, level) in leveled {
            match skill_levels.insert(Skill::from(language), level) {
                Some(other) if other != level => errors
                    .add(path, format!("conflicts with the level {other} given elsewhere for {language}")),
                _ => {}
            }
        }

        SoftwareContext {
            languages,
            skill_levels,
            experience_level: one(errors, "software_context.experience_level", &self.experience_level),
            experience_years: one(errors, "software_context.experience_years", &self.experience_years),
            preferred_tools: set(errors, "software_context.preferred_tools", &self.preferred_tools),
            frameworks: set(errors, "software_context.frameworks", &self.frameworks),
        }
    }
}

impl HardwareContextInput {
    fn parse(&self, errors: &mut FieldErrors) -> HardwareContext {
        let specifications = self.specifications.as_ref();
        let text = |errors: &mut FieldErrors, path: &str, raw: Option<&String>| {
            raw.filter(|t| !t.trim().is_empty()).and_then(|t| errors.check(path, SpecText::parse(t)))
        };
        HardwareContext {
            devices: set(errors, "hardware_context.devices", &self.devices),
            specifications: Specifications {
                gpu: text(
                    errors,
                    "hardware_context.specifications.gpu",
                    specifications.and_then(|s| s.gpu.as_ref()),
                ),
                ram: text(
                    errors,
                    "hardware_context.specifications.ram",
                    specifications.and_then(|s| s.ram.as_ref()),
                ),
            },
            constraints: set(errors, "hardware_context.constraints", &self.constraints),
            architecture_familiarity: set(
                errors,
                "hardware_context.architecture_familiarity",
                &self.architecture_familiarity,
            ),
        }
    }
}

/// An optional catalog value.
fn one<T: CatalogValue>(errors: &mut FieldErrors, path: &str, raw: &Option<String>) -> Option<T> {
    raw.as_deref().and_then(|raw| errors.check(path, T::parse(raw)))
}

/// A set of catalog values, deduplicated; each bad element is named by its index.
fn set<T: CatalogValue + Ord>(
    errors: &mut FieldErrors,
    path: &str,
    raw: &Option<Vec<String>>,
) -> BTreeSet<T> {
    let raw = raw.as_deref().unwrap_or_default();
    raw.iter()
        .enumerate()
        .filter_map(|(i, value)| errors.check(&format!("{path}[{i}]"), T::parse(value)))
        .collect()
}

/// `base.key`, or `base["key"]` when the key is not a plain word (`skill_levels["ROS 2"]`).
fn key_path(base: &str, key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("{base}.{key}")
    } else {
        format!("{base}[{}]", serde_json::Value::from(key))
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::profile::examples::seed_000;
    use serde_json::{Value, json};

    use super::*;
    use crate::Error;
    use crate::domain::profile::{DeveloperRole, Device, Tool};

    fn input(document: Value) -> ProfileInput {
        serde_json::from_value(document).expect("the input shape")
    }

    /// The fields a 422 names, in order.
    fn invalid_fields(document: Value) -> Vec<String> {
        match input(document).parse() {
            Err(Error::Validation(fields)) => fields.into_iter().map(|f| f.field).collect(),
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn seed_000_validates_unchanged() {
        let profile = input(seed_000()).parse().unwrap();
        let software = &profile.software_context;
        assert_eq!(
            software.languages().iter().copied().collect::<Vec<_>>(),
            [Language::Cpp, Language::Python]
        );
        assert_eq!(software.experience_level(), Some(Level::Intermediate));
        assert!(
            software.preferred_tools().contains(&Tool::VsCode)
                && software.preferred_tools().contains(&Tool::Ros)
        );
        assert!(profile.hardware_context.devices.contains(&Device::RobotArm));
        assert_eq!(profile.hardware_context.specifications.gpu.as_ref().unwrap().as_str(), "RTX3060");
        assert!(!profile.is_onboarded());
    }

    #[test]
    fn seed_002_language_objects_become_names_and_skill_levels() {
        let profile = input(json!({
            "software_context": {
                "languages": [{"language": "Python", "level": "Intermediate"}, {"language": "Rust"}],
                "frameworks": ["ROS 2"],
                "experience_years": "3-5"
            },
            "hardware_context": {"devices": ["Jetson"], "architecture_familiarity": ["ARM64", "CUDA"]}
        }))
        .parse()
        .unwrap();
        let document = profile.to_document();
        assert_eq!(document["software_context"]["languages"], json!(["Python", "Rust"]));
        assert_eq!(document["software_context"]["skill_levels"], json!({"Python": "Intermediate"}));
        assert_eq!(document["software_context"]["experience_years"], "3-5");
    }

    #[test]
    fn two_levels_for_one_language_are_refused() {
        let fields = invalid_fields(json!({
            "software_context": {
                "languages": [{"language": "Python", "level": "Beginner"}],
                "skill_levels": {"Python": "Advanced"}
            },
            "hardware_context": {}
        }));
        assert_eq!(fields, ["software_context.languages[0].level"]);
    }

    #[test]
    fn every_invalid_field_is_named_by_its_path() {
        let fields = invalid_fields(json!({
            "software_context": {
                "languages": ["Python", "Cobol", {"language": "Fortran", "level": "Guru"}],
                "skill_levels": {"ROS 2": "Expert", "Basket weaving": "Advanced"},
                "experience_level": "Wizard",
                "experience_years": "forever",
                "preferred_tools": ["VSCode", "Notepad"],
                "frameworks": ["Rails"]
            },
            "hardware_context": {
                "devices": ["Toaster"],
                "specifications": {"gpu": "x".repeat(65)},
                "constraints": ["NoCoffee"],
                "architecture_familiarity": ["PDP-11"]
            },
            "python_proficiency": "Expert",
            "developer_role": "Manager",
            "robotics_experience": "lots",
            "learning_goals": ["simulation", "juggling"]
        }));
        assert_eq!(
            fields,
            [
                "software_context.languages[1]",
                "software_context.languages[2].language",
                "software_context.languages[2].level",
                "software_context.skill_levels[\"Basket weaving\"]",
                "software_context.skill_levels[\"ROS 2\"]",
                "software_context.experience_level",
                "software_context.experience_years",
                "software_context.preferred_tools[1]",
                "software_context.frameworks[0]",
                "hardware_context.devices[0]",
                "hardware_context.specifications.gpu",
                "hardware_context.constraints[0]",
                "hardware_context.architecture_familiarity[0]",
                "python_proficiency",
                "developer_role",
                "robotics_experience",
                "learning_goals[1]",
            ]
        );
    }

    #[test]
    fn software_context_must_name_a_language_or_skill_level() {
        for software in [json!({}), json!({"languages": [], "skill_levels": {}, "preferred_tools": ["Git"]})]
        {
            let fields = invalid_fields(json!({"software_context": software, "hardware_context": {}}));
            assert_eq!(fields, ["software_context"]);
        }
        // A skill level alone is enough (the personalization model).
        let only_levels =
            json!({"software_context": {"skill_levels": {"ROS 2": "Beginner"}}, "hardware_context": {}});
        assert!(input(only_levels).parse().is_ok());
    }

    #[test]
    fn both_contexts_are_required() {
        assert_eq!(invalid_fields(json!({})), ["software_context", "hardware_context"]);
    }

    #[test]
    fn blank_specifications_and_nulls_count_as_absent() {
        let profile = input(json!({
            "software_context": {"languages": ["Python"], "experience_level": null},
            "hardware_context": {"specifications": {"gpu": "  ", "ram": null}},
            "developer_role": null
        }))
        .parse()
        .unwrap();
        assert_eq!(profile.hardware_context.specifications.gpu, None);
        assert_eq!(profile.developer_role, None::<DeveloperRole>);
    }

    #[test]
    fn shape_errors_are_serde_errors() {
        let wrong_type = json!({"software_context": {"languages": "Python"}, "hardware_context": {}});
        assert!(serde_json::from_value::<ProfileInput>(wrong_type).is_err());
        for array in [
            json!({"software_context": ["Python"], "hardware_context": {}}),
            json!({"software_context": {"languages": ["Python"]}, "hardware_context": [null]}),
            json!({"hardware_context": {"specifications": [null, null]}}),
        ] {
            assert!(serde_json::from_value::<ProfileInput>(array.clone()).is_err(), "{array}");
        }
        let unknown_key = json!({"software_context": {"langauges": ["Python"]}, "hardware_context": {}});
        assert!(serde_json::from_value::<ProfileInput>(unknown_key).is_err());
        let bad_entry = json!({"software_context": {"languages": [42]}, "hardware_context": {}});
        let message = serde_json::from_value::<ProfileInput>(bad_entry).unwrap_err().to_string();
        assert!(message.contains(r#"a language name or a {"language", "level"} object"#), "{message}");
    }

    #[test]
    fn what_get_shows_besides_the_profile_is_ignored() {
        let mut document = seed_000();
        let extra = json!({"is_onboarded": true, "profile_hash": "x", "created_at": 1, "updated_at": null});
        document.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        assert_eq!(input(document).parse().unwrap(), input(seed_000()).parse().unwrap());
    }
}
