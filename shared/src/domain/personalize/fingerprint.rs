//! The personalization cache's key: a hash of exactly what a personalized chapter depends on.
//!
//! `profile_hash` changes with any edit of the profile, but most edits cannot change most
//! chapters: a new learning goal means nothing to a chapter with no `goal` directive. Keying
//! the cache by what the chosen engine reads keeps those copies: the rule-based engine reads the
//! reader's values of the facets the chapter's directives mention (and nothing else, its note
//! included), the model reads the whole profile.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Reader;
use super::rules::Decisions;
use crate::domain::profile::ProfileHash;

/// SHA-256, as 64 lowercase hex characters, of what a personalized chapter was made from: the
/// engine tried first, the chapter version, and the part of the profile that engine reads.
///
/// What goes in: a scheme tag (`primer-personalization/2`, bumped when the form changes: the
/// copies keyed the old way are then made again once, and the janitor removes the old ones),
/// then compact JSON with sorted keys — `{"chapter_version": N, "engine": "rule", "outcomes":
/// [true, false, ...], "shaped_by": {"goal": ["locomotion"], "skill:ROS 2": "Beginner"}}` for
/// the rule-based engine: whether each directive the reader's text reaches keeps its block, in
/// the chapter's order, and the reader's value of each facet of the kept ones (`null` for a
/// value not given); `{"chapter_version": N, "engine": "model", "profile_hash": "..."}` for the
/// model, whose input is the whole profile.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    const SCHEME: &'static [u8] = b"primer-personalization/2\n";

    /// The rule-based engine's key: its `decisions` for `reader` on a chapter at
    /// `chapter_version` ([`super::rules::Directives::decide`]).
    pub fn of_rules(chapter_version: i32, decisions: &Decisions, reader: &Reader) -> Self {
        let shaped_by: BTreeMap<String, Value> =
            decisions.shaped_by.iter().map(|f| (f.to_string(), reader.value(*f))).collect();
        Self::digest(&json!({
            "chapter_version": chapter_version,
            "engine": "rule",
            "outcomes": decisions.outcomes,
            "shaped_by": shaped_by,
        }))
    }

    /// The model's key: the whole profile (its `profile_hash`), at `chapter_version`.
    pub fn of_model(chapter_version: i32, profile_hash: &ProfileHash) -> Self {
        Self::digest(
            &json!({"chapter_version": chapter_version, "engine": "model", "profile_hash": profile_hash}),
        )
    }

    fn digest(canonical: &Value) -> Self {
        // Keys are written sorted (or, under serde_json's `preserve_order`, in the sorted order
        // they were inserted in), so equal inputs give equal bytes.
        let bytes = serde_json::to_vec(canonical).expect("JSON values serialize");
        Self(hex::encode(Sha256::new().chain_update(Self::SCHEME).chain_update(&bytes).finalize()))
    }

    /// The hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::personalize::rules::Directives;
    use crate::domain::profile::catalog::{Framework, Language, LearningGoal, Level, Skill, Tool};

    fn reader() -> Reader {
        let mut reader = Reader::new(Level::Intermediate);
        reader.languages.insert(Language::Python);
        reader.skills.insert(Skill::Framework(Framework::Ros2), Level::Beginner);
        reader.tools.insert(Tool::VsCode);
        reader
    }

    const CHAPTER: &str = "# T\n:::only{language=\"Python\"}\npy\n:::only{skill=\"ROS 2:advanced\"}\ndeep\n:::\n:::\n\
                           :::only{tool=\"Docker\"}\ncontainers\n:::\n";

    fn key(reader: &Reader) -> Fingerprint {
        Fingerprint::of_rules(1, &Directives::of(CHAPTER).decide(reader), reader)
    }

    #[test]
    fn only_the_decisions_count() {
        let base = key(&reader());
        assert_eq!(base.as_str().len(), 64);
        assert_eq!(key(&reader()), base, "the same input, the same key");

        // Nothing a directive reads, or nothing that changes its outcome: the same key.
        let mut other = reader();
        other.goals.insert(LearningGoal::Locomotion);
        other.skills.insert(Skill::Language(Language::Cpp), Level::Advanced);
        other.level = Level::Advanced;
        assert_eq!(key(&other), base, "unmentioned facets do not count");
        let mut vim = reader();
        vim.tools = [Tool::Vim].into();
        assert_eq!(key(&vim), base, "no Docker either way: the tool passage is dropped for both");
        let mut ros2 = reader();
        ros2.skills.insert(Skill::Framework(Framework::Ros2), Level::Intermediate);
        assert_eq!(key(&ros2), base, "not advanced either way");

        // An outcome that changes, or the value of a facet the kept blocks read (the note names it).
        let mut docker = reader();
        docker.tools.insert(Tool::Docker);
        assert_ne!(key(&docker), base);
        ros2.skills.insert(Skill::Framework(Framework::Ros2), Level::Advanced);
        assert_ne!(key(&ros2), base);
        let mut cpp = reader();
        cpp.languages.insert(Language::Cpp);
        assert_ne!(key(&cpp), base, "the Python block is kept for both, but the note lists the languages");
        assert_ne!(
            Fingerprint::of_rules(2, &Directives::of(CHAPTER).decide(&reader()), &reader()),
            base,
            "the chapter version counts"
        );
        // A chapter that mentions nothing keys every profile alike.
        let none = Directives::of("# Plain\n");
        assert_eq!(
            Fingerprint::of_rules(1, &none.decide(&reader()), &reader()),
            Fingerprint::of_rules(1, &none.decide(&docker), &docker)
        );
    }

    /// The hash of the API's example profile with these learning goals.
    fn profile_hash(goals: &[&str]) -> ProfileHash {
        let mut document = crate::domain::profile::examples::api_example();
        document["learning_goals"] = json!(goals);
        serde_json::from_value::<crate::domain::profile::ProfileInput>(document)
            .unwrap()
            .parse()
            .unwrap()
            .hash()
    }

    #[test]
    fn the_model_key_follows_the_whole_profile_and_differs_from_the_rules() {
        let (a, b) = (profile_hash(&[]), profile_hash(&["locomotion"]));
        assert_eq!(Fingerprint::of_model(1, &a), Fingerprint::of_model(1, &a));
        assert_ne!(Fingerprint::of_model(1, &a), Fingerprint::of_model(1, &b));
        assert_ne!(Fingerprint::of_model(1, &a), Fingerprint::of_model(2, &a));
        assert_ne!(Fingerprint::of_model(1, &a), Fingerprint::of_rules(1, &Default::default(), &reader()));
    }

    /// Readers that differ from the API's example profile in one facet each, every catalog
    /// value of it in turn.
    fn variants() -> Vec<Reader> {
        use crate::domain::profile::catalog::{
            Architecture, CatalogValue, Constraint, DeveloperRole, Device, RoboticsExperience,
        };
        let input: crate::domain::profile::ProfileInput =
            serde_json::from_value(crate::domain::profile::examples::api_example()).unwrap();
        let base = Reader::of(&input.parse().unwrap()).unwrap();
        let mut readers = vec![base.clone()];
        let mut vary = |change: &dyn Fn(&mut Reader)| {
            let mut reader = base.clone();
            change(&mut reader);
            readers.push(reader);
        };
        for &v in Level::ALL {
            vary(&|r| r.level = v);
            vary(&|r| r.experience = Some(v));
            vary(&|r| r.skills = [(Skill::Framework(Framework::Ros2), v)].into());
        }
        for &v in Tool::ALL {
            vary(&|r| r.tools = [v].into());
            vary(&|r| _ = r.tools.insert(v));
        }
        for &v in LearningGoal::ALL {
            vary(&|r| r.goals = [v].into());
        }
        for &v in Device::ALL {
            vary(&|r| r.devices = [v].into());
        }
        for &v in Constraint::ALL {
            vary(&|r| _ = r.constraints.insert(v));
        }
        for &v in Language::ALL {
            vary(&|r| r.languages = [v].into());
        }
        for &v in Framework::ALL {
            vary(&|r| r.frameworks = [v].into());
        }
        for &v in Architecture::ALL {
            vary(&|r| r.architectures = [v].into());
        }
        for &v in RoboticsExperience::ALL {
            vary(&|r| r.robotics = v);
        }
        for &v in DeveloperRole::ALL {
            vary(&|r| r.role = v);
        }
        readers
    }

    /// The property the cache rests on, over the sample book: two readers with one key get
    /// byte-identical chapters (so serving one's copy to the other is right), and the decisions
    /// made without the text are the filter's.
    #[test]
    fn one_key_one_text_over_the_sample_book() {
        use crate::domain::personalize::rules::{self, Directives};
        use crate::domain::personalize::with_note;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../content/book");
        let mut chapters: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        chapters.sort();
        assert!(chapters.len() >= 6, "the sample book is there");
        let readers = variants();
        let (mut keys, mut shared) = (0, 0);
        for path in chapters {
            let source = std::fs::read_to_string(&path).unwrap();
            let directives = Directives::of(&source);
            let mut texts: std::collections::HashMap<Fingerprint, String> = Default::default();
            for reader in &readers {
                let filtered = rules::filter(&source, reader);
                let decisions = directives.decide(reader);
                assert_eq!(decisions, filtered.decisions, "{path:?}");
                let text = with_note(&filtered.markdown, &rules::note(reader, &filtered));
                let key = Fingerprint::of_rules(1, &decisions, reader);
                match texts.get(&key) {
                    Some(made) => {
                        assert_eq!(made, &text, "{path:?}: one key, two texts");
                        shared += 1;
                    }
                    None => _ = texts.insert(key, text),
                }
            }
            // Different texts never share a key, as a hash of what makes them.
            let distinct: std::collections::HashSet<&String> = texts.values().collect();
            assert_eq!(distinct.len(), texts.len(), "{path:?}: one text, two keys");
            keys += texts.len();
        }
        // Not vacuous: many edits keep their copy, and many do not.
        assert!(shared > readers.len() && keys > 6 * 10, "{shared} shared, {keys} keys");
    }
}
