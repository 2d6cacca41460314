//! The book's markdown read line by line: code fences, headings, and the personalization
//! directives.
//!
//! A directive is a container: an opening line `:::only{level="beginner|intermediate"}` or
//! `:::except{device="GPU"}`, then markdown, then a line holding `:::` alone, which closes the
//! innermost open directive. Other containers (`:::note`, `:::tip`) are not ours: they are
//! reported as [`Line::OpenOther`] so that a reader can keep their closing line paired. Nothing
//! inside a fenced code block is a directive or a heading.

use crate::domain::profile::catalog::{
    Architecture, CatalogValue, Constraint, DeveloperRole, Device, ExperienceYears, Framework, Language,
    LearningGoal, Level, RoboticsExperience, Skill, Tool,
};

/// What a line of the book is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// Prose, or any line inside a code block.
    Text,
    /// A line that opens or closes a fenced code block.
    Fence,
    /// An ATX heading outside code, `##` being level 2.
    Heading {
        /// 1 to 6.
        level: u8,
        /// The heading's text, without the `#`s.
        text: &'a str,
    },
    /// `:::only{...}` or `:::except{...}`, or a malformed one (the error says why).
    Open(Result<Directive, String>),
    /// A container directive the book does not interpret, such as `:::note`.
    OpenOther,
    /// A lone `:::`.
    Close,
}

/// One line of a chapter as [`scan`] yields it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedLine<'a> {
    /// 1-based line number, for error messages.
    pub number: usize,
    /// The line exactly as written, with its line ending.
    pub raw: &'a str,
    /// What it is.
    pub kind: Line<'a>,
}

/// The lines of `markdown` with what each one is; concatenating the `raw`s gives `markdown`
/// back.
pub fn scan(markdown: &str) -> impl Iterator<Item = ScannedLine<'_>> {
    let mut fence: Option<(u8, usize)> = None;
    markdown.split_inclusive('\n').enumerate().map(move |(i, raw)| {
        let line = raw.trim_end_matches(['\n', '\r']);
        let kind = match fence {
            Some(open) => {
                if closes_fence(line, open) {
                    fence = None;
                    Line::Fence
                } else {
                    Line::Text
                }
            }
            None => match fence_opening(line) {
                Some(open) => {
                    fence = Some(open);
                    Line::Fence
                }
                None => classify(line),
            },
        };
        ScannedLine { number: i + 1, raw, kind }
    })
}

/// The fence character and length of a line opening a code block.
fn fence_opening(line: &str) -> Option<(u8, usize)> {
    let t = line.trim_start();
    let c = *t.as_bytes().first()?;
    if c != b'`' && c != b'~' {
        return None;
    }
    let n = t.bytes().take_while(|&b| b == c).count();
    // A backtick fence's info string cannot hold a backtick (that is inline code).
    let info_ok = c == b'~' || !t[n..].contains('`');
    (n >= 3 && info_ok).then_some((c, n))
}

fn closes_fence(line: &str, (c, len): (u8, usize)) -> bool {
    let t = line.trim();
    let n = t.bytes().take_while(|&b| b == c).count();
    n >= len && n == t.len()
}

fn classify(line: &str) -> Line<'_> {
    let t = line.trim();
    if let Some(heading) = heading(t) {
        return heading;
    }
    let colons = t.bytes().take_while(|&b| b == b':').count();
    if colons < 3 {
        return Line::Text;
    }
    let rest = &t[colons..];
    if rest.is_empty() {
        return Line::Close;
    }
    let name_len = rest.bytes().take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')).count();
    match &rest[..name_len] {
        "" => Line::Text,
        "only" => Line::Open(Directive::parse(DirectiveKind::Only, &rest[name_len..])),
        "except" => Line::Open(Directive::parse(DirectiveKind::Except, &rest[name_len..])),
        _ => Line::OpenOther,
    }
}

fn heading(t: &str) -> Option<Line<'_>> {
    let level = t.bytes().take_while(|&b| b == b'#').count();
    let rest = &t[level..];
    if !(1..=6).contains(&level) || !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    // A closing sequence of `#`s is not part of the text.
    let text = rest.trim().trim_end_matches('#').trim_end();
    Some(Line::Heading { level: level as u8, text })
}

/// Whether a directive keeps its block for matching readers or drops it for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectiveKind {
    /// `:::only`: the block is for readers matching every condition.
    Only,
    /// `:::except`: the block is for everyone but readers matching every condition.
    Except,
}

/// A parsed `:::only{...}` or `:::except{...}`: every key must match for the directive to
/// apply; within a key, any of the `|`-separated values matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Only or except.
    pub kind: DirectiveKind,
    /// At least one condition, at most one per key.
    pub conditions: Vec<Condition>,
}

/// One `key="v1|v2"` of a directive: which facet of the reader it reads, and the values that
/// match. Every value is the profile catalog's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `level`: the reader's Python proficiency (their overall level when they gave none).
    Level(Vec<Level>),
    /// `experience`: the reader's overall programming level.
    Experience(Vec<Level>),
    /// `years`: how long the reader has programmed.
    Years(Vec<ExperienceYears>),
    /// `robotics`: the reader's robotics experience.
    Robotics(Vec<RoboticsExperience>),
    /// `role`: the reader's developer role.
    Role(Vec<DeveloperRole>),
    /// `language`: a language the reader writes.
    Language(Vec<Language>),
    /// `skill`: the reader's level in a language or framework (`ROS 2:beginner`), or any level
    /// given for it (`ROS 2`).
    Skill(Vec<SkillLevel>),
    /// `framework`: a framework the reader knows.
    Framework(Vec<Framework>),
    /// `tool`: a tool the reader prefers.
    Tool(Vec<Tool>),
    /// `device`: a device the reader has.
    Device(Vec<Device>),
    /// `constraint`: something that limits what the reader can run.
    Constraint(Vec<Constraint>),
    /// `architecture`: an architecture the reader knows.
    Architecture(Vec<Architecture>),
    /// `goal`: something the reader wants to learn.
    Goal(Vec<LearningGoal>),
}

impl Directive {
    /// Parses the attribute block that follows the name, `{key="v1|v2" key2="v"}`.
    fn parse(kind: DirectiveKind, attributes: &str) -> Result<Self, String> {
        let inner = attributes
            .trim()
            .strip_prefix('{')
            .and_then(|a| a.strip_suffix('}'))
            .ok_or("expected attributes in braces, e.g. {level=\"beginner\"}")?;
        let mut conditions = Vec::new();
        let mut keys = Vec::new();
        let mut rest = inner.trim_start();
        while !rest.is_empty() {
            let (key, after) =
                rest.split_once('=').ok_or_else(|| format!("expected key=\"value\" at {rest:?}"))?;
            let key = key.trim();
            let value_and_more = after
                .trim_start()
                .strip_prefix('"')
                .ok_or_else(|| format!("the value of {key} must be quoted"))?;
            let (value, more) =
                value_and_more.split_once('"').ok_or_else(|| format!("the value of {key} is not closed"))?;
            if keys.contains(&key) {
                return Err(format!("{key} is given twice"));
            }
            keys.push(key);
            conditions.push(Condition::parse(key, value)?);
            rest = more.trim_start();
        }
        if conditions.is_empty() {
            return Err("a directive needs at least one condition".into());
        }
        Ok(Self { kind, conditions })
    }
}

/// One value of a `skill` condition: a language or framework, and the level that matches
/// (any level the reader gave for it when `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkillLevel {
    /// The language or framework.
    pub skill: Skill,
    /// The level, if one is asked for.
    pub level: Option<Level>,
}

/// A part of the reader's profile that a directive can read. The personalization cache is
/// keyed by the reader's values of exactly the facets a chapter's directives mention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Facet {
    /// `level`.
    Level,
    /// `experience`.
    Experience,
    /// `years`.
    Years,
    /// `robotics`.
    Robotics,
    /// `role`.
    Role,
    /// `language`.
    Language,
    /// `skill`, for one language or framework: a chapter that asks about ROS 2 does not
    /// depend on the reader's C++ level.
    Skill(Skill),
    /// `framework`.
    Framework,
    /// `tool`.
    Tool,
    /// `device`.
    Device,
    /// `constraint`.
    Constraint,
    /// `architecture`.
    Architecture,
    /// `goal`.
    Goal,
}

/// Every directive key, in the order documentation lists them.
pub const KEYS: [&str; 13] = [
    "level",
    "experience",
    "years",
    "robotics",
    "role",
    "language",
    "skill",
    "framework",
    "tool",
    "device",
    "constraint",
    "architecture",
    "goal",
];

impl Facet {
    /// The directive key that reads this facet.
    pub fn key(self) -> &'static str {
        match self {
            Self::Level => "level",
            Self::Experience => "experience",
            Self::Years => "years",
            Self::Robotics => "robotics",
            Self::Role => "role",
            Self::Language => "language",
            Self::Skill(_) => "skill",
            Self::Framework => "framework",
            Self::Tool => "tool",
            Self::Device => "device",
            Self::Constraint => "constraint",
            Self::Architecture => "architecture",
            Self::Goal => "goal",
        }
    }
}

impl std::fmt::Display for Facet {
    /// The key, and for a skill the skill: `goal`, `skill:ROS 2`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Skill(skill) => write!(f, "skill:{}", skill.as_str()),
            other => f.write_str(other.key()),
        }
    }
}

impl Condition {
    /// The facets this condition reads: one, or one per skill it names.
    pub fn facets(&self) -> Vec<Facet> {
        match self {
            Self::Level(_) => vec![Facet::Level],
            Self::Experience(_) => vec![Facet::Experience],
            Self::Years(_) => vec![Facet::Years],
            Self::Robotics(_) => vec![Facet::Robotics],
            Self::Role(_) => vec![Facet::Role],
            Self::Language(_) => vec![Facet::Language],
            Self::Skill(values) => values.iter().map(|v| Facet::Skill(v.skill)).collect(),
            Self::Framework(_) => vec![Facet::Framework],
            Self::Tool(_) => vec![Facet::Tool],
            Self::Device(_) => vec![Facet::Device],
            Self::Constraint(_) => vec![Facet::Constraint],
            Self::Architecture(_) => vec![Facet::Architecture],
            Self::Goal(_) => vec![Facet::Goal],
        }
    }

    fn parse(key: &str, values: &str) -> Result<Self, String> {
        Ok(match key {
            "level" => Self::Level(all(key, values)?),
            "experience" => Self::Experience(all(key, values)?),
            "years" => Self::Years(all(key, values)?),
            "robotics" => Self::Robotics(all(key, values)?),
            "role" => Self::Role(all(key, values)?),
            "language" => Self::Language(all(key, values)?),
            "skill" => Self::Skill(values.split('|').map(SkillLevel::parse).collect::<Result<_, _>>()?),
            "framework" => Self::Framework(all(key, values)?),
            "tool" => Self::Tool(all(key, values)?),
            "device" => Self::Device(all(key, values)?),
            "constraint" => Self::Constraint(all(key, values)?),
            "architecture" => Self::Architecture(all(key, values)?),
            "goal" => Self::Goal(all(key, values)?),
            _ => {
                let (last, init) = KEYS.split_last().expect("there are keys");
                return Err(format!("unknown key {key:?} (expected {} or {last})", init.join(", ")));
            }
        })
    }
}

/// The `|`-separated `values` of `key`, each one of the catalog's values in any case:
/// `level="beginner"` means `Beginner`.
fn all<T: CatalogValue>(key: &str, values: &str) -> Result<Vec<T>, String> {
    values.split('|').map(|v| one(key, v)).collect()
}

fn one<T: CatalogValue>(key: &str, value: &str) -> Result<T, String> {
    let value = value.trim();
    T::ALL.iter().copied().find(|t| t.as_str().eq_ignore_ascii_case(value)).ok_or_else(|| {
        let allowed: Vec<&str> = T::ALL.iter().map(|t| t.as_str()).collect();
        format!("unknown {key} {value:?} (expected one of {})", allowed.join(", "))
    })
}

impl SkillLevel {
    /// `ROS 2:beginner` or `ROS 2`; the skill and the level as the catalog spells them, in any
    /// case.
    fn parse(value: &str) -> Result<Self, String> {
        let (name, level) = match value.split_once(':') {
            Some((name, level)) => (name.trim(), Some(level)),
            None => (value.trim(), None),
        };
        let skill = Skill::all().find(|s| s.as_str().eq_ignore_ascii_case(name)).ok_or_else(|| {
            format!("unknown skill {name:?} (expected a language or framework of the catalog, e.g. Python or ROS 2)")
        })?;
        let level = level.map(|l| one::<Level>("skill level", l)).transpose()?;
        Ok(Self { skill, level })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(markdown: &str) -> Vec<Line<'_>> {
        scan(markdown).map(|l| l.kind).collect()
    }

    #[test]
    fn scanning_gives_the_text_back() {
        let text = "# T\r\n\n:::only{level=\"beginner\"}\nhi\n:::\n```\n:::\n```\nend";
        assert_eq!(scan(text).map(|l| l.raw).collect::<String>(), text);
    }

    #[test]
    fn directives_headings_and_fences_are_told_apart() {
        let text = "# Title\n## Part ##\n:::only{level=\"beginner|advanced\" device=\"Jetson\"}\n:::note\n:::\n:::\n```python\n# comment\n:::\n```\n#hashtag\n";
        let only = Directive {
            kind: DirectiveKind::Only,
            conditions: vec![
                Condition::Level(vec![Level::Beginner, Level::Advanced]),
                Condition::Device(vec![Device::Jetson]),
            ],
        };
        assert_eq!(
            kinds(text),
            vec![
                Line::Heading { level: 1, text: "Title" },
                Line::Heading { level: 2, text: "Part" },
                Line::Open(Ok(only)),
                Line::OpenOther,
                Line::Close,
                Line::Close,
                Line::Fence,
                Line::Text,
                Line::Text,
                Line::Fence,
                Line::Text,
            ]
        );
    }

    #[test]
    fn a_longer_fence_is_closed_only_by_as_long_a_fence() {
        let text = "````md\n```\n:::\n````\n:::\n";
        assert_eq!(kinds(text), vec![Line::Fence, Line::Text, Line::Text, Line::Fence, Line::Close]);
    }

    #[test]
    fn values_match_case_insensitively_and_except_parses() {
        let Line::Open(Ok(d)) = classify(":::except{language=\"python|CPP\" robotics=\"real_hardware\"}")
        else {
            panic!("not a directive");
        };
        assert_eq!(d.kind, DirectiveKind::Except);
        assert_eq!(d.conditions[0], Condition::Language(vec![Language::Python, Language::Cpp]));
        assert_eq!(d.conditions[1], Condition::Robotics(vec![RoboticsExperience::RealHardware]));
    }

    #[test]
    fn malformed_directives_say_what_is_wrong() {
        let error = |line: &str| match classify(line) {
            Line::Open(Err(e)) => e,
            other => panic!("{line}: {other:?}"),
        };
        assert!(error(":::only{color=\"red\"}").contains("unknown key"));
        assert!(error(":::only{device=\"Toaster\"}").contains("unknown device \"Toaster\""));
        assert!(error(":::only{level=beginner}").contains("quoted"));
        assert!(error(":::only").contains("braces"));
        assert!(error(":::only{}").contains("at least one"));
        assert!(error(":::only{level=\"beginner\" level=\"advanced\"}").contains("twice"));
        assert!(error(":::only{goal=\"flying\"}").contains("unknown goal \"flying\" (expected one of ros2,"));
        assert!(error(":::only{skill=\"Cobol:beginner\"}").contains("unknown skill \"Cobol\""));
        assert!(error(":::only{skill=\"Cpp:guru\"}").contains("unknown skill level \"guru\""));
        assert!(error(":::only{constraint=\"NoToaster\"}").contains("unknown constraint"));
        let unknown = error(":::only{colour=\"red\"}");
        assert!(
            unknown.contains("expected level, experience, years,")
                && unknown.ends_with("architecture or goal)")
        );
    }

    fn conditions(line: &str) -> Vec<Condition> {
        match classify(line) {
            Line::Open(Ok(d)) => d.conditions,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn every_facet_of_the_profile_has_a_key() {
        let all = conditions(
            ":::only{experience=\"advanced\" years=\"0-1|10+\" role=\"full stack developer\" \
             framework=\"ros 2|MoveIt\" tool=\"docker\" constraint=\"NoGPU|lowmemory\" \
             architecture=\"arm64\" goal=\"locomotion|SIM_TO_REAL\"}",
        );
        assert_eq!(
            all,
            vec![
                Condition::Experience(vec![Level::Advanced]),
                Condition::Years(vec![ExperienceYears::UnderOne, ExperienceYears::OverTen]),
                Condition::Role(vec![DeveloperRole::FullStack]),
                Condition::Framework(vec![Framework::Ros2, Framework::MoveIt]),
                Condition::Tool(vec![Tool::Docker]),
                Condition::Constraint(vec![Constraint::NoGpu, Constraint::LowMemory]),
                Condition::Architecture(vec![Architecture::Arm64]),
                Condition::Goal(vec![LearningGoal::Locomotion, LearningGoal::SimToReal]),
            ]
        );
        let facets: Vec<String> = all.iter().flat_map(Condition::facets).map(|f| f.to_string()).collect();
        assert_eq!(
            facets,
            ["experience", "years", "role", "framework", "tool", "constraint", "architecture", "goal"]
        );
        // Each key reads a facet named after it.
        for condition in &all {
            assert!(condition.facets().iter().all(|f| KEYS.contains(&f.key())));
        }
    }

    #[test]
    fn a_skill_is_a_language_or_framework_with_an_optional_level() {
        let skills = conditions(":::only{skill=\"ROS 2:beginner|cpp:Advanced|python\"}");
        let ros2 = Skill::Framework(Framework::Ros2);
        let cpp = Skill::Language(Language::Cpp);
        let python = Skill::Language(Language::Python);
        assert_eq!(
            skills,
            vec![Condition::Skill(vec![
                SkillLevel { skill: ros2, level: Some(Level::Beginner) },
                SkillLevel { skill: cpp, level: Some(Level::Advanced) },
                SkillLevel { skill: python, level: None },
            ])]
        );
        // One facet per skill named, so a chapter asking about ROS 2 does not depend on C++.
        assert_eq!(skills[0].facets(), vec![Facet::Skill(ros2), Facet::Skill(cpp), Facet::Skill(python)]);
        assert_eq!(Facet::Skill(ros2).to_string(), "skill:ROS 2");
    }
}
