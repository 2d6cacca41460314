//! The rule-based engine: the book's own directives decide, deterministically, which blocks a
//! reader sees.

use crate::book::markup::{Condition, DirectiveKind, Line, scan};

use super::Reader;

/// A chapter with the blocks meant for other readers taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filtered {
    /// The markdown, without our directive lines; other containers (`:::note`) intact.
    pub markdown: String,
    /// Directive blocks kept for this reader.
    pub kept: usize,
    /// Directive blocks dropped for this reader.
    pub dropped: usize,
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
    let (mut kept, mut dropped) = (0, 0);
    // Removing a block leaves the blank lines around it; one of them is enough.
    let mut removed_since_emit = false;
    let mut last_blank = false;
    let visible = |stack: &[Frame]| stack.iter().all(|f| !matches!(f, Frame::Ours { keep: false }));

    for line in scan(markdown) {
        let shown = visible(&stack);
        let emit = match line.kind {
            Line::Open(Ok(directive)) => {
                let keep = applies(&directive.conditions, reader) == (directive.kind == DirectiveKind::Only);
                if shown {
                    if keep { kept += 1 } else { dropped += 1 }
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
    Filtered { markdown: out, kept, dropped }
}

/// True when the reader matches every condition.
fn applies(conditions: &[Condition], reader: &Reader) -> bool {
    conditions.iter().all(|condition| match condition {
        Condition::Level(levels) => levels.contains(&reader.level),
        Condition::Robotics(kinds) => kinds.contains(&reader.robotics),
        Condition::Device(devices) => devices.iter().any(|d| reader.devices.contains(d)),
        Condition::Language(languages) => languages.iter().any(|l| reader.languages.contains(l)),
    })
}

/// The "tailored for you" note: who the chapter was shaped for and what that changed.
pub fn note(reader: &Reader, filtered: &Filtered) -> String {
    let changed = match (filtered.kept, filtered.dropped) {
        (0, 0) => {
            "This chapter has no passages specific to a background, so you are reading all of it.".into()
        }
        (kept, dropped) => format!(
            "It includes {} written for readers like you and leaves out {} meant for other backgrounds.",
            passages(kept),
            passages(dropped)
        ),
    };
    format!("> **Tailored for you.** Shown for {}. {changed}", reader.describe())
}

fn passages(n: usize) -> String {
    if n == 1 { "1 passage".into() } else { format!("{n} passages") }
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
    use std::collections::BTreeSet;

    use super::*;
    use crate::personalize::with_note;
    use crate::profile::catalog::{Device, Language, Level, RoboticsExperience};

    fn reader(
        level: Level,
        robotics: RoboticsExperience,
        devices: &[Device],
        languages: &[Language],
    ) -> Reader {
        Reader {
            level,
            robotics,
            devices: devices.iter().copied().collect::<BTreeSet<_>>(),
            languages: languages.iter().copied().collect::<BTreeSet<_>>(),
        }
    }

    fn beginner() -> Reader {
        reader(Level::Beginner, RoboticsExperience::NoneYet, &[Device::Simulation], &[Language::Python])
    }

    fn expert() -> Reader {
        reader(
            Level::Advanced,
            RoboticsExperience::RealHardware,
            &[Device::Jetson, Device::Humanoid],
            &[Language::Cpp],
        )
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
        assert_eq!((filtered.kept, filtered.dropped), (0, 1));
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
        assert!(out.starts_with("# Walking\n\n> **Tailored for you.** Shown for a beginner"), "{out}");
        assert!(
            out.contains("includes 1 passage written for readers like you and leaves out 1 passage"),
            "{out}"
        );
        assert!(out.contains("\n\nIntro.\n"), "{out}");
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
}
