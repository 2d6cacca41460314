//! The personalization cache's key: a hash of exactly what a personalized chapter depends on.
//!
//! `profile_hash` changes with any edit of the profile, but most edits cannot change most
//! chapters: a new learning goal means nothing to a chapter with no `goal` directive. Keying
//! the cache by what the chosen engine reads keeps those copies: the rule-based engine reads the
//! reader's values of the facets the chapter's directives mention (and nothing else, its note
//! included), the model reads the whole profile.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Reader;
use crate::book::markup::Facet;

/// SHA-256, as 64 lowercase hex characters, of what a personalized chapter was made from: the
/// engine tried first, the chapter version, and the part of the profile that engine reads.
///
/// What goes in: a scheme tag (`primer-personalization/1`, bumped if the form ever changes),
/// then compact JSON with sorted keys — `{"chapter_version": N, "engine": "rule", "facets":
/// {"goal": ["locomotion"], "skill:ROS 2": "Beginner", ...}}` for the rule-based engine, one
/// entry per facet the chapter's directives mention, `null` for a value not given; `{"chapter_version": N,
/// "engine": "model", "profile_hash": "..."}` for the model, whose input is the whole profile.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    const SCHEME: &'static [u8] = b"primer-personalization/1\n";

    /// The rule-based engine's key: `reader`'s values of `facets` (the chapter's), at
    /// `chapter_version`.
    pub fn of_rules(chapter_version: i32, facets: &BTreeSet<Facet>, reader: &Reader) -> Self {
        let values: BTreeMap<String, Value> =
            facets.iter().map(|f| (f.to_string(), reader.value(*f))).collect();
        Self::digest(&json!({"chapter_version": chapter_version, "engine": "rule", "facets": values}))
    }

    /// The model's key: the whole profile (its `profile_hash`), at `chapter_version`.
    pub fn of_model(chapter_version: i32, profile_hash: &str) -> Self {
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
    use crate::profile::catalog::{Framework, Language, LearningGoal, Level, Skill};

    fn reader() -> Reader {
        let mut reader = Reader::new(Level::Intermediate);
        reader.languages.insert(Language::Python);
        reader.skills.insert(Skill::Framework(Framework::Ros2), Level::Beginner);
        reader
    }

    #[test]
    fn only_the_facets_a_chapter_mentions_count() {
        let facets = BTreeSet::from([Facet::Language, Facet::Skill(Skill::Framework(Framework::Ros2))]);
        let base = Fingerprint::of_rules(1, &facets, &reader());
        assert_eq!(base.as_str().len(), 64);
        assert_eq!(Fingerprint::of_rules(1, &facets, &reader()), base, "the same input, the same key");

        let mut goals = reader();
        goals.goals.insert(LearningGoal::Locomotion);
        goals.skills.insert(Skill::Language(Language::Cpp), Level::Advanced);
        goals.level = Level::Advanced;
        assert_eq!(Fingerprint::of_rules(1, &facets, &goals), base, "unmentioned facets do not count");

        let mut languages = reader();
        languages.languages.insert(Language::Cpp);
        assert_ne!(Fingerprint::of_rules(1, &facets, &languages), base);
        let mut ros2 = reader();
        ros2.skills.insert(Skill::Framework(Framework::Ros2), Level::Advanced);
        assert_ne!(Fingerprint::of_rules(1, &facets, &ros2), base);
        ros2.skills.clear();
        assert_ne!(Fingerprint::of_rules(1, &facets, &ros2), base, "a level not given is a value too");
        assert_ne!(Fingerprint::of_rules(2, &facets, &reader()), base, "the chapter version counts");
        // A chapter that mentions goals gets another key, and one that mentions nothing keys
        // every profile alike.
        assert_ne!(Fingerprint::of_rules(1, &BTreeSet::from([Facet::Goal]), &reader()), base);
        let none = BTreeSet::new();
        assert_eq!(Fingerprint::of_rules(1, &none, &reader()), Fingerprint::of_rules(1, &none, &goals));
    }

    #[test]
    fn the_model_key_follows_the_whole_profile_and_differs_from_the_rules() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        assert_eq!(Fingerprint::of_model(1, &a), Fingerprint::of_model(1, &a));
        assert_ne!(Fingerprint::of_model(1, &a), Fingerprint::of_model(1, &b));
        assert_ne!(Fingerprint::of_model(1, &a), Fingerprint::of_model(2, &a));
        assert_ne!(Fingerprint::of_model(1, &a), Fingerprint::of_rules(1, &BTreeSet::new(), &reader()));
    }
}
