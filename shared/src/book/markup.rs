//! The book's markdown read line by line: code fences, headings, and the personalization
//! directives.
//!
//! A directive is a container: an opening line `:::only{level="beginner|intermediate"}` or
//! `:::except{device="GPU"}`, then markdown, then a line holding `:::` alone, which closes the
//! innermost open directive. Other containers (`:::note`, `:::tip`) are not ours: they are
//! reported as [`Line::OpenOther`] so that a reader can keep their closing line paired. Nothing
//! inside a fenced code block is a directive or a heading.

use crate::profile::catalog::{CatalogValue, Device, Language, Level, RoboticsExperience};

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

/// One `key="v1|v2"` of a directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `level`: the reader's experience.
    Level(Vec<Level>),
    /// `robotics`: the reader's robotics experience.
    Robotics(Vec<RoboticsExperience>),
    /// `device`: a device the reader has.
    Device(Vec<Device>),
    /// `language`: a language the reader writes.
    Language(Vec<Language>),
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

impl Condition {
    fn parse(key: &str, values: &str) -> Result<Self, String> {
        // The profile catalog's values, in any case: `level="beginner"` means `Beginner`.
        fn all<T: CatalogValue>(key: &str, values: &str) -> Result<Vec<T>, String> {
            values
                .split('|')
                .map(|v| {
                    T::ALL.iter().copied().find(|t| t.as_str().eq_ignore_ascii_case(v.trim())).ok_or_else(
                        || {
                            let allowed: Vec<&str> = T::ALL.iter().map(|t| t.as_str()).collect();
                            format!("unknown {key} {:?} (expected one of {})", v.trim(), allowed.join(", "))
                        },
                    )
                })
                .collect()
        }
        Ok(match key {
            "level" => Self::Level(all(key, values)?),
            "robotics" => Self::Robotics(all(key, values)?),
            "device" => Self::Device(all(key, values)?),
            "language" => Self::Language(all(key, values)?),
            _ => return Err(format!("unknown key {key:?} (expected level, robotics, device or language)")),
        })
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
    }
}
