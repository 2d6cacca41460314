//! The rule-based engine: the book's own directives decide, deterministically, which blocks a
//! reader sees.
//!
//! What it makes of a chapter depends on its [`Decisions`] for the reader and on nothing else:
//! which blocks it keeps, and the reader's values of the facets of the kept ones (which the
//! note names). That is what lets the cache key its copies by the decisions alone (see
//! [`super::fingerprint`]), and [`Directives::decide`] makes them without the chapter's text.

use std::collections::BTreeSet;

use crate::domain::book::markup::{Condition, Directive, DirectiveKind, Facet, Line, scan};

use super::Reader;

/// A chapter with the blocks meant for other readers taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filtered {
    /// The markdown, without our directive lines; other containers (`:::note`) intact.
    pub markdown: String,
    /// The facets the chapter's directives mention (see [`facets`]).
    pub facets: BTreeSet<Facet>,
    /// What the rules decided for this reader.
    pub decisions: Decisions,
}

/// What the rule engine decided for one reader of one chapter: all its output depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    /// For each directive the reader's text reaches (those inside a dropped block do not), in
    /// the chapter's order: whether its block is kept.
    pub outcomes: Vec<bool>,
    /// The facets read by the directives whose blocks this reader gets: what shaped their
    /// text, and what the note names with the reader's values.
    pub shaped_by: BTreeSet<Facet>,
}

impl Decisions {
    /// Directive blocks kept for this reader.
    pub fn kept(&self) -> usize {
        self.outcomes.iter().filter(|kept| **kept).count()
    }

    /// Directive blocks dropped for this reader.
    pub fn dropped(&self) -> usize {
        self.outcomes.len() - self.kept()
    }

    fn record(&mut self, directive: &Directive, keep: bool) {
        self.outcomes.push(keep);
        if keep {
            self.shaped_by.extend(directive.conditions.iter().flat_map(Condition::facets));
        }
    }
}

/// A chapter's directives in its order, each with the directive whose block holds it: what the
/// rule engine decides from, without the text around them (a few hundred bytes for a chapter
/// of tens of kilobytes), so that a cache hit can be keyed by decisions without the chapter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives(Vec<(Directive, Option<usize>)>);

impl Directives {
    /// The directives of `markdown`; malformed ones are text to the rules, so not here.
    pub fn of(markdown: &str) -> Self {
        let mut directives = Vec::new();
        // The open containers: ours by index, somebody else's as None.
        let mut stack: Vec<Option<usize>> = Vec::new();
        for line in scan(markdown) {
            match line.kind {
                Line::Open(Ok(directive)) => {
                    let parent = stack.iter().rev().find_map(|frame| *frame);
                    stack.push(Some(directives.len()));
                    directives.push((directive, parent));
                }
                Line::Open(Err(_)) | Line::OpenOther => stack.push(None),
                Line::Close => {
                    stack.pop();
                }
                _ => {}
            }
        }
        Self(directives)
    }

    /// The facets of the reader that the directives mention, wherever they are.
    pub fn facets(&self) -> BTreeSet<Facet> {
        self.0.iter().flat_map(|(d, _)| &d.conditions).flat_map(Condition::facets).collect()
    }

    /// What [`filter`] decides for `reader`, without the text.
    pub fn decide(&self, reader: &Reader) -> Decisions {
        let mut decisions = Decisions::default();
        // Per directive: whether its block is shown (reached, and kept).
        let mut shown: Vec<bool> = Vec::with_capacity(self.0.len());
        for (directive, parent) in &self.0 {
            let reached = parent.is_none_or(|p| shown[p]);
            let keep = keeps(directive, reader);
            if reached {
                decisions.record(directive, keep);
            }
            shown.push(reached && keep);
        }
        decisions
    }
}

/// One open container while filtering.
enum Frame {
    /// `:::only` / `:::except`, and whether its block is for this reader.
    Ours { keep: bool },
    /// Somebody else's container: passed through, closing line included.
    Other,
}

/// Keeps what is for `reader` and drops what is not. Nested directives apply inside the
/// blocks that are kept; a malformed directive is passed through like an unknown one.
pub fn filter(markdown: &str, reader: &Reader) -> Filtered {
    let mut out = String::with_capacity(markdown.len());
    let mut stack: Vec<Frame> = Vec::new();
    let mut facets = BTreeSet::new();
    let mut decisions = Decisions::default();
    // Removing a block leaves the blank lines around it; one of them is enough.
    let mut removed_since_emit = false;
    let mut last_blank = false;
    let visible = |stack: &[Frame]| stack.iter().all(|f| !matches!(f, Frame::Ours { keep: false }));

    for line in scan(markdown) {
        let shown = visible(&stack);
        let emit = match line.kind {
            Line::Open(Ok(directive)) => {
                facets.extend(directive.conditions.iter().flat_map(Condition::facets));
                let keep = keeps(&directive, reader);
                if shown {
                    decisions.record(&directive, keep);
                }
                stack.push(Frame::Ours { keep });
                false
            }
            Line::Open(Err(_)) | Line::OpenOther => {
                stack.push(Frame::Other);
                shown
            }
            Line::Close => match stack.pop() {
                Some(Frame::Ours { .. }) => false,
                Some(Frame::Other) => visible(&stack),
                // A stray closer is somebody's text; leave it be.
                None => true,
            },
            _ => shown,
        };
        if !emit {
            removed_since_emit = true;
            continue;
        }
        let blank = line.raw.trim().is_empty();
        if blank && last_blank && removed_since_emit {
            continue;
        }
        out.push_str(line.raw);
        last_blank = blank;
        if !blank {
            removed_since_emit = false;
        }
    }
    Filtered { markdown: out, facets, decisions }
}

/// Whether `directive`'s block is for `reader`.
fn keeps(directive: &Directive, reader: &Reader) -> bool {
    applies(&directive.conditions, reader) == (directive.kind == DirectiveKind::Only)
}

/// The facets of the reader that the chapter's directives mention, wherever they are (also in
/// blocks one reader or another never sees): what its personalized text can depend on.
pub fn facets(markdown: &str) -> BTreeSet<Facet> {
    Directives::of(markdown).facets()
}

/// True when the reader matches every condition: for a set (languages, goals, ...), when they
/// have any of its values; for a single answer, when theirs is one of them (an answer not
/// given matches nothing).
fn applies(conditions: &[Condition], reader: &Reader) -> bool {
    fn any<T: Ord>(wanted: &[T], theirs: &BTreeSet<T>) -> bool {
        wanted.iter().any(|w| theirs.contains(w))
    }
    fn is<T: PartialEq>(wanted: &[T], theirs: Option<&T>) -> bool {
        theirs.is_some_and(|t| wanted.contains(t))
    }
    conditions.iter().all(|condition| match condition {
        Condition::Level(levels) => levels.contains(&reader.level),
        Condition::Experience(levels) => is(levels, reader.experience.as_ref()),
        Condition::Years(years) => is(years, reader.years.as_ref()),
        Condition::Robotics(kinds) => kinds.contains(&reader.robotics),
        Condition::Role(roles) => roles.contains(&reader.role),
        Condition::Language(languages) => any(languages, &reader.languages),
        Condition::Skill(skills) => skills.iter().any(|wanted| {
            reader.skills.get(&wanted.skill).is_some_and(|level| wanted.level.is_none_or(|l| l == *level))
        }),
        Condition::Framework(frameworks) => any(frameworks, &reader.frameworks),
        Condition::Tool(tools) => any(tools, &reader.tools),
        Condition::Device(devices) => any(devices, &reader.devices),
        Condition::Constraint(constraints) => any(constraints, &reader.constraints),
        Condition::Architecture(architectures) => any(architectures, &reader.architectures),
        Condition::Goal(goals) => any(goals, &reader.goals),
    })
}

/// The "tailored for you" note: which facets of the reader shaped the chapter (those of the
/// directives whose blocks they get), with their values, and what that changed. It reads only
/// facets the chapter mentions, so it is as stable as the cache key.
pub fn note(reader: &Reader, filtered: &Filtered) -> String {
    if filtered.facets.is_empty() {
        return "> **Tailored for you.** This chapter has no passages specific to a background, so you are \
                reading all of it."
            .into();
    }
    let decisions = &filtered.decisions;
    let shaped_by: Vec<String> = decisions.shaped_by.iter().map(|f| reader.describe(*f)).collect();
    match list(shaped_by.iter().map(String::as_str)) {
        Some(shaped_by) => format!(
            "> **Tailored for you.** Shaped by your {shaped_by}: it includes {} written for readers like \
             you and leaves out {} meant for other backgrounds.",
            passages(decisions.kept()),
            passages(decisions.dropped())
        ),
        None => format!(
            "> **Tailored for you.** None of this chapter's passages for particular backgrounds matches \
             yours, so it leaves out {}.",
            passages(decisions.dropped())
        ),
    }
}

fn passages(n: usize) -> String {
    match n {
        0 => "no passages".into(),
        1 => "1 passage".into(),
        n => format!("{n} passages"),
    }
}

/// `a`, `a and b`, `a, b and c`.
pub(super) fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let names: Vec<&str> = items.into_iter().collect();
    match names.as_slice() {
        [] => None,
        [one] => Some((*one).to_owned()),
        [init @ .., last] => Some(format!("{} and {last}", init.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::personalize::with_note;
    use crate::domain::profile::catalog::{
        Architecture, Constraint, DeveloperRole, Device, ExperienceYears, Framework, Language, LearningGoal,
        Level, RoboticsExperience, Skill, Tool,
    };

    /// A newcomer to programming and robots, on a laptop without a GPU.
    fn beginner() -> Reader {
        let mut reader = Reader::new(Level::Beginner);
        reader.experience = Some(Level::Beginner);
        reader.years = Some(ExperienceYears::UnderOne);
        reader.role = DeveloperRole::Frontend;
        reader.devices.insert(Device::Simulation);
        reader.languages.insert(Language::Python);
        reader.skills.insert(Skill::Language(Language::Python), Level::Beginner);
        reader.skills.insert(Skill::Framework(Framework::Ros2), Level::Beginner);
        reader.frameworks.insert(Framework::PyTorch);
        reader.tools.insert(Tool::Jupyter);
        reader.constraints.insert(Constraint::NoGpu);
        reader.architectures.insert(Architecture::X86_64);
        reader.goals.insert(LearningGoal::Ros2);
        reader
    }

    /// A roboticist who writes C++ for humanoids.
    fn expert() -> Reader {
        let mut reader = Reader::new(Level::Advanced);
        reader.experience = Some(Level::Advanced);
        reader.years = Some(ExperienceYears::OverTen);
        reader.robotics = RoboticsExperience::RealHardware;
        reader.role = DeveloperRole::Backend;
        reader.devices.extend([Device::Jetson, Device::Humanoid]);
        reader.languages.insert(Language::Cpp);
        reader.skills.insert(Skill::Language(Language::Cpp), Level::Advanced);
        reader.skills.insert(Skill::Framework(Framework::Ros2), Level::Advanced);
        reader.frameworks.insert(Framework::MoveIt);
        reader.tools.insert(Tool::CLion);
        reader.architectures.insert(Architecture::Arm64);
        reader.goals.insert(LearningGoal::Locomotion);
        reader
    }

    fn body(markdown: &str, reader: &Reader) -> String {
        filter(markdown, reader).markdown
    }

    #[test]
    fn each_key_keeps_matching_readers_and_drops_others() {
        let cases = [
            "level=\"beginner|intermediate\"",
            "robotics=\"none\"",
            "device=\"Simulation|GPU\"",
            "language=\"Python\"",
            "experience=\"beginner\"",
            "years=\"0-1|1-3\"",
            "role=\"Frontend Developer\"",
            "skill=\"ROS 2:beginner\"",
            "skill=\"Python\"",
            "skill=\"Cpp:beginner|Python:beginner\"",
            "framework=\"PyTorch|TensorFlow\"",
            "tool=\"Jupyter\"",
            "constraint=\"NoGPU|LowMemory\"",
            "architecture=\"x86_64\"",
            "goal=\"ros2|simulation\"",
        ];
        for attrs in cases {
            let only = format!("a\n:::only{{{attrs}}}\nsecret\n:::\nb\n");
            assert_eq!(body(&only, &beginner()), "a\nsecret\nb\n", "only{{{attrs}}} for the beginner");
            assert_eq!(body(&only, &expert()), "a\nb\n", "only{{{attrs}}} for the expert");
            let except = format!("a\n:::except{{{attrs}}}\nsecret\n:::\nb\n");
            assert_eq!(body(&except, &beginner()), "a\nb\n", "except{{{attrs}}} for the beginner");
            assert_eq!(body(&except, &expert()), "a\nsecret\nb\n", "except{{{attrs}}} for the expert");
        }
    }

    #[test]
    fn every_key_of_a_directive_must_match() {
        let text = ":::only{level=\"beginner\" device=\"Jetson\"}\nboth\n:::\n";
        assert_eq!(body(text, &beginner()), "");
        let mut jetson_beginner = beginner();
        jetson_beginner.devices.insert(Device::Jetson);
        assert_eq!(body(text, &jetson_beginner), "both\n");
    }

    #[test]
    fn nested_directives_apply_inside_kept_blocks_only() {
        let text = "\
:::only{language=\"Python\"}
python
:::only{level=\"advanced\"}
python, advanced
:::
:::except{level=\"advanced\"}
python, not advanced
:::
:::
end
";
        assert_eq!(body(text, &beginner()), "python\npython, not advanced\nend\n");
        let filtered = filter(text, &expert());
        assert_eq!(filtered.markdown, "end\n");
        // The nested ones inside the dropped block are not counted.
        assert_eq!((filtered.decisions.kept(), filtered.decisions.dropped()), (0, 1));
        let mut python_expert = expert();
        python_expert.languages.insert(Language::Python);
        assert_eq!(body(text, &python_expert), "python\npython, advanced\nend\n");
    }

    #[test]
    fn unknown_directives_pass_through_with_their_closing_line() {
        let text = "\
:::note
A note.
:::only{level=\"advanced\"}
deep
:::
still the note
:::
:::tip[Try it]
tip
:::
";
        assert_eq!(
            body(text, &beginner()),
            ":::note\nA note.\nstill the note\n:::\n:::tip[Try it]\ntip\n:::\n"
        );
        // Inside a dropped block, somebody else's container goes too, closing line and all.
        let dropped = ":::only{level=\"advanced\"}\n:::note\nn\n:::\n:::\nafter\n";
        assert_eq!(body(dropped, &beginner()), "after\n");
        // A malformed directive is not ours to interpret.
        let odd = ":::only{colour=\"red\"}\nx\n:::\n";
        assert_eq!(body(odd, &beginner()), odd);
    }

    #[test]
    fn code_blocks_are_never_read_as_directives() {
        let text = "```markdown\n:::only{level=\"advanced\"}\n:::\n```\n";
        assert_eq!(body(text, &beginner()), text);
    }

    #[test]
    fn a_dropped_block_leaves_one_blank_line() {
        let text = "para one\n\n:::only{level=\"advanced\"}\ndeep\n:::\n\npara two\n\n\n```\n\n\n```\n";
        assert_eq!(body(text, &beginner()), "para one\n\npara two\n\n\n```\n\n\n```\n");
    }

    #[test]
    fn the_note_sits_under_the_title_and_says_what_changed() {
        let text = "# Walking\n\nIntro.\n\n:::only{level=\"advanced\"}\ndeep\n:::\n\n:::only{robotics=\"none\"}\nno robot yet\n:::\n";
        let filtered = filter(text, &beginner());
        let out = with_note(&filtered.markdown, &note(&beginner(), &filtered));
        assert!(
            out.starts_with(
                "# Walking\n\n> **Tailored for you.** Shaped by your robotics experience (none yet): it \
                 includes 1 passage written for readers like you and leaves out 1 passage"
            ),
            "{out}"
        );
        assert!(out.contains("\n\nIntro.\n"), "{out}");
        // Where nothing is for this reader, the note says so.
        let mut in_simulation = Reader::new(Level::Intermediate);
        in_simulation.robotics = RoboticsExperience::SimulationOnly;
        let neither = note(&in_simulation, &filter(text, &in_simulation));
        assert!(neither.ends_with("matches yours, so it leaves out 2 passages."), "{neither}");
        let plain = filter("No title here.\n", &beginner());
        let out = with_note(&plain.markdown, &note(&beginner(), &plain));
        assert!(out.starts_with("> **Tailored for you.**") && out.ends_with("\n\nNo title here.\n"), "{out}");
        assert!(out.contains("reading all of it"));
    }

    #[test]
    fn two_readers_get_different_chapters() {
        let text = "# T\n:::only{language=\"Python\"}\nrclpy\n:::\n:::only{language=\"Cpp\"}\nrclcpp\n:::\n";
        let a = filter(text, &beginner());
        let b = filter(text, &expert());
        assert_ne!(
            with_note(&a.markdown, &note(&beginner(), &a)),
            with_note(&b.markdown, &note(&expert(), &b))
        );
        assert!(a.markdown.contains("rclpy") && !a.markdown.contains("rclcpp"));
        assert!(b.markdown.contains("rclcpp") && !b.markdown.contains("rclpy"));
    }

    #[test]
    fn the_facets_are_those_any_directive_mentions() {
        let text = "\
# T
:::only{goal=\"locomotion\"}
:::except{skill=\"ROS 2:beginner\" constraint=\"NoGPU\"}
nested
:::
:::
```
:::only{tool=\"Docker\"}
```
:::note
:::
";
        let expected =
            BTreeSet::from([Facet::Goal, Facet::Skill(Skill::Framework(Framework::Ros2)), Facet::Constraint]);
        assert_eq!(facets(text), expected, "nested ones too, never those in code");
        // The filter sees the same set, for any reader, even where the outer block is dropped.
        assert_eq!(filter(text, &beginner()).facets, expected);
        assert_eq!(filter(text, &expert()).facets, expected);
        assert!(facets("# Plain\n\nNo directives.\n").is_empty());
    }

    #[test]
    fn output_and_note_depend_only_on_the_facets_the_chapter_mentions() {
        let text = "# T\n\n:::only{goal=\"locomotion\"}\nWalk.\n:::\n\n:::only{constraint=\"NoGPU\"}\nCPU only.\n:::\n";
        let reader = beginner();
        let mut other = expert();
        // Same goals and constraints, everything else different.
        other.goals = reader.goals.clone();
        other.constraints = reader.constraints.clone();
        let made = |r: &Reader| {
            let f = filter(text, r);
            with_note(&f.markdown, &note(r, &f))
        };
        assert_eq!(made(&reader), made(&other));
        let out = made(&reader);
        assert!(
            out.contains(
                "Shaped by your constraints (No dedicated GPU): it includes 1 passage written for readers \
                 like you and leaves out 1 passage"
            ),
            "{out}"
        );
        let mut walker = reader.clone();
        walker.goals.insert(LearningGoal::Locomotion);
        assert_ne!(made(&walker), out);
        assert!(made(&walker).contains("Walk.") && !out.contains("Walk."));
    }

    #[test]
    fn skill_conditions_compare_the_level_given_for_that_skill() {
        let text = ":::only{skill=\"Cpp:advanced\"}\nmove semantics\n:::\n:::except{skill=\"ROS 2\"}\nwhat ROS 2 is\n:::\n";
        assert_eq!(body(text, &expert()), "move semantics\n");
        let mut new_to_ros = beginner();
        new_to_ros.skills.clear();
        assert_eq!(body(text, &new_to_ros), "what ROS 2 is\n", "no level given: not a ROS 2 reader");
        let mut cpp_beginner = expert();
        cpp_beginner.skills.insert(Skill::Language(Language::Cpp), Level::Beginner);
        assert_eq!(body(text, &cpp_beginner), "");
    }

    #[test]
    fn an_answer_not_given_matches_nothing() {
        let text = ":::only{experience=\"beginner|intermediate|advanced\"}\nx\n:::\n:::except{years=\"0-1|1-3|3-5|5-10|10+\"}\ny\n:::\n";
        let silent = Reader::new(Level::Beginner);
        assert_eq!(body(text, &silent), "y\n");
        assert_eq!(body(text, &beginner()), "x\n");
    }
}
