//! The catalog: every enumerated value a profile may hold, in one place.
//!
//! Each value has the spelling the API and the database use (case-sensitive, also read by SQL
//! in other functions, so never rename one without a data migration) and a label for people.
//! [`options`] groups them by field for `GET /api/profile/options`, so a frontend builds its
//! onboarding form from the same list the server validates against.

use serde::{Serialize, Serializer};

use super::SPEC_TEXT_MAX_CHARS;

/// A closed set of values, one per variant, as the catalog defines it.
pub trait CatalogValue: Copy + Sized + 'static {
    /// Every value, in the order a form shows them.
    const ALL: &'static [Self];

    /// The value as the API and the database spell it.
    fn as_str(self) -> &'static str;

    /// What a person reads.
    fn label(self) -> &'static str;

    /// Parses a value exactly as the catalog spells it.
    fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL.iter().copied().find(|v| v.as_str() == raw).ok_or_else(|| {
            let allowed: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
            format!("unknown value '{raw}'; expected one of: {}", allowed.join(", "))
        })
    }
}

/// Defines a catalog enum: its variants, their spellings and labels.
macro_rules! catalog_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $value:literal, $label:literal;)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $(#[doc = $label] $variant,)+
        }

        impl CatalogValue for $name {
            const ALL: &'static [Self] = &[$(Self::$variant),+];

            fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $value),+ }
            }

            fn label(self) -> &'static str {
                match self { $(Self::$variant => $label),+ }
            }
        }

        // Ordered by spelling, not by catalog position, so that adding a value to the catalog
        // never reorders (and re-hashes) the profiles that already exist.
        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.as_str().cmp(other.as_str())
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        /// A string of the catalog's values.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($value),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

catalog_enum! {
    /// A level of skill: `python_proficiency`, `experience_level` and every skill level.
    Level {
        Beginner => "Beginner", "Beginner";
        Intermediate => "Intermediate", "Intermediate";
        Advanced => "Advanced", "Advanced";
    }
}

catalog_enum! {
    /// What the reader does for a living (the onboarding model).
    DeveloperRole {
        Frontend => "Frontend Developer", "Frontend Developer";
        Backend => "Backend Developer", "Backend Developer";
        FullStack => "Full Stack Developer", "Full Stack Developer";
        NoRole => "None", "None of these";
    }
}

catalog_enum! {
    /// How far the reader has gone with robots (the personalization model).
    RoboticsExperience {
        NoneYet => "none", "None yet";
        SimulationOnly => "simulation_only", "Simulation only";
        RealHardware => "real_hardware", "Real hardware";
    }
}

catalog_enum! {
    /// A programming language (the guest-chat and users-table models).
    Language {
        Python => "Python", "Python";
        Cpp => "Cpp", "C++";
        C => "C", "C";
        Rust => "Rust", "Rust";
        Go => "Go", "Go";
        Java => "Java", "Java";
        CSharp => "CSharp", "C#";
        JavaScript => "JavaScript", "JavaScript";
        TypeScript => "TypeScript", "TypeScript";
        Julia => "Julia", "Julia";
        Matlab => "MATLAB", "MATLAB";
        Lua => "Lua", "Lua";
    }
}

catalog_enum! {
    /// Years of programming experience, as a range (the users-table model's `"3-5"`).
    ExperienceYears {
        UnderOne => "0-1", "Less than 1 year";
        OneToThree => "1-3", "1 to 3 years";
        ThreeToFive => "3-5", "3 to 5 years";
        FiveToTen => "5-10", "5 to 10 years";
        OverTen => "10+", "More than 10 years";
    }
}

catalog_enum! {
    /// A tool the reader prefers to work with (the guest-chat model).
    Tool {
        VsCode => "VSCode", "Visual Studio Code";
        PyCharm => "PyCharm", "PyCharm";
        CLion => "CLion", "CLion";
        Vim => "Vim", "Vim / Neovim";
        Emacs => "Emacs", "Emacs";
        Jupyter => "Jupyter", "Jupyter";
        Git => "Git", "Git";
        Docker => "Docker", "Docker";
        Ros => "ROS", "ROS tooling (rviz, rqt, rosbag)";
        Gazebo => "Gazebo", "Gazebo";
        IsaacSim => "IsaacSim", "NVIDIA Isaac Sim";
        Webots => "Webots", "Webots";
        MuJoCo => "MuJoCo", "MuJoCo";
        Unity => "Unity", "Unity";
    }
}

catalog_enum! {
    /// A framework or library the reader knows (the users-table model).
    Framework {
        Ros2 => "ROS 2", "ROS 2";
        Ros1 => "ROS 1", "ROS 1";
        MoveIt => "MoveIt", "MoveIt";
        Nav2 => "Nav2", "Nav2";
        IsaacRos => "Isaac ROS", "NVIDIA Isaac ROS";
        PyTorch => "PyTorch", "PyTorch";
        TensorFlow => "TensorFlow", "TensorFlow";
        Jax => "JAX", "JAX";
        OpenCv => "OpenCV", "OpenCV";
        NumPy => "NumPy", "NumPy";
        ScikitLearn => "scikit-learn", "scikit-learn";
        React => "React", "React";
        NodeJs => "Node.js", "Node.js";
        Django => "Django", "Django";
        FastApi => "FastAPI", "FastAPI";
        Flask => "Flask", "Flask";
    }
}

catalog_enum! {
    /// Hardware the reader can use (the guest-chat model's devices, the personalization model's hardware access).
    Device {
        Simulation => "Simulation", "Simulation only (no physical hardware)";
        Gpu => "GPU", "A CUDA-capable GPU";
        Jetson => "Jetson", "NVIDIA Jetson";
        RaspberryPi => "RaspberryPi", "Raspberry Pi";
        Arduino => "Arduino", "Arduino or another microcontroller";
        RobotArm => "RobotArm", "Robot arm";
        MobileRobot => "MobileRobot", "Wheeled mobile robot";
        Quadruped => "Quadruped", "Quadruped robot";
        Humanoid => "Humanoid", "Humanoid robot";
        Drone => "Drone", "Drone";
        DepthCamera => "DepthCamera", "Depth camera (e.g. RealSense)";
        Lidar => "Lidar", "LiDAR";
    }
}

catalog_enum! {
    /// Something that limits what the reader can run (the guest-chat model).
    Constraint {
        NoInternet => "NoInternet", "No or unreliable internet";
        LowBandwidth => "LowBandwidth", "Slow internet connection";
        NoGpu => "NoGPU", "No dedicated GPU";
        LowMemory => "LowMemory", "8 GB of RAM or less";
        NoAdminRights => "NoAdminRights", "No admin rights on my computer";
        WindowsOnly => "WindowsOnly", "Windows only (no Linux)";
        MacOnly => "MacOnly", "macOS only (no Linux)";
    }
}

catalog_enum! {
    /// A processor architecture or accelerator platform the reader knows (the users-table model).
    Architecture {
        X86_64 => "x86_64", "x86-64";
        Arm64 => "ARM64", "64-bit ARM (AArch64)";
        Armv7 => "ARMv7", "32-bit ARM";
        RiscV => "RISC-V", "RISC-V";
        Avr => "AVR", "AVR microcontrollers";
        Cuda => "CUDA", "CUDA";
    }
}

catalog_enum! {
    /// What the reader wants to learn (the personalization model).
    LearningGoal {
        Ros2 => "ros2", "ROS 2 fundamentals";
        Simulation => "simulation", "Simulation";
        Perception => "perception", "Perception and computer vision";
        Navigation => "navigation", "Navigation and mapping";
        Manipulation => "manipulation", "Manipulation";
        Locomotion => "locomotion", "Locomotion";
        Control => "control", "Control";
        ReinforcementLearning => "reinforcement_learning", "Reinforcement learning";
        VisionLanguageAction => "vision_language_action", "Vision-language-action models";
        SimToReal => "sim_to_real", "Sim-to-real transfer";
        Humanoids => "humanoids", "Humanoid robots";
        EdgeDeployment => "edge_deployment", "Deploying on edge devices";
    }
}

/// Something a skill level can be given for: a language or a framework (the personalization model's "levels
/// for Python, ROS 2, C++"). Spelled as the language or framework is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skill {
    /// A language, e.g. `Python`.
    Language(Language),
    /// A framework, e.g. `ROS 2`.
    Framework(Framework),
}

impl Skill {
    /// Every skill: the languages, then the frameworks.
    pub fn all() -> impl Iterator<Item = Self> {
        let languages = Language::ALL.iter().copied().map(Self::Language);
        languages.chain(Framework::ALL.iter().copied().map(Self::Framework))
    }

    /// The skill as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Language(l) => l.as_str(),
            Self::Framework(f) => f.as_str(),
        }
    }

    /// What a person reads.
    pub fn label(self) -> &'static str {
        match self {
            Self::Language(l) => l.label(),
            Self::Framework(f) => f.label(),
        }
    }

    /// Parses a language or framework name (the two sets share no spelling).
    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::all()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| format!("unknown skill '{raw}'; expected a language or framework of the catalog"))
    }
}

impl Ord for Skill {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for Skill {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for Skill {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl From<Language> for Skill {
    fn from(language: Language) -> Self {
        Self::Language(language)
    }
}

/// The body of `GET /api/profile/options`: every field of the onboarding form, in form order.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(
    description = "The catalog of allowed profile values, grouped by field in form order, so a frontend can build its onboarding form from it. Values are case-sensitive and are exactly what the API accepts and stores.",
    examples(json!({"fields": [
        {"field": "software_context.languages", "label": "Programming languages", "kind": "multiple",
         "options": [{"value": "Python", "label": "Python"}, {"value": "Cpp", "label": "C++"}],
         "immutable_once_onboarded": false},
        {"field": "hardware_context.specifications.gpu", "label": "GPU model", "kind": "text", "max_length": 64,
         "immutable_once_onboarded": false},
    ]}))
)]
pub struct ProfileOptions {
    /// The fields.
    #[schema(inline)]
    pub fields: Vec<FieldOptions>,
}

/// One field of the form and what it accepts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldOptions {
    /// The JSON path of the field in a profile, e.g. `software_context.languages`.
    #[schema(examples("software_context.languages"))]
    pub field: &'static str,
    /// What a person reads.
    pub label: &'static str,
    /// `single`: one value of `options` or none; `multiple`: an array of values of `options`; `map`: an object from `keys` to a value of `options` (`software_context.skill_levels`); `text`: free text up to `max_length` characters.
    #[schema(inline)]
    pub kind: FieldKind,
    /// The allowed values (the levels, for a `map`); absent for free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Vec<OptionItem>, inline, required = false)]
    pub options: Option<Vec<OptionItem>>,
    /// The allowed keys of a `map` (the skills of `software_context.skill_levels`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Vec<OptionItem>, inline, required = false)]
    pub keys: Option<Vec<OptionItem>>,
    /// The longest accepted free text, in characters; only for `text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = usize, required = false)]
    pub max_length: Option<usize>,
    /// True for the onboarding answers (the onboarding model): once both are given, neither may change.
    pub immutable_once_onboarded: bool,
}

/// How a field is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// One value of `options`, or none.
    Single,
    /// Any number of values of `options` (an array).
    Multiple,
    /// An object from `keys` to one value of `options` each.
    Map,
    /// Free text up to `max_length` characters.
    Text,
}

/// One allowed value and its label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OptionItem {
    /// The value to send (case-sensitive).
    pub value: &'static str,
    /// What a person reads.
    pub label: &'static str,
}

fn items<T: CatalogValue>() -> Vec<OptionItem> {
    T::ALL.iter().map(|v| OptionItem { value: v.as_str(), label: v.label() }).collect()
}

fn choice<T: CatalogValue>(field: &'static str, label: &'static str, kind: FieldKind) -> FieldOptions {
    FieldOptions {
        field,
        label,
        kind,
        options: Some(items::<T>()),
        keys: None,
        max_length: None,
        immutable_once_onboarded: false,
    }
}

fn text(field: &'static str, label: &'static str) -> FieldOptions {
    FieldOptions {
        field,
        label,
        kind: FieldKind::Text,
        options: None,
        keys: None,
        max_length: Some(SPEC_TEXT_MAX_CHARS),
        immutable_once_onboarded: false,
    }
}

/// The whole catalog, grouped by field.
pub fn options() -> ProfileOptions {
    use FieldKind::{Multiple, Single};
    let onboarding = |f: FieldOptions| FieldOptions { immutable_once_onboarded: true, ..f };
    let skills = Skill::all().map(|s| OptionItem { value: s.as_str(), label: s.label() }).collect();
    ProfileOptions {
        fields: vec![
            onboarding(choice::<Level>("python_proficiency", "How well do you know Python?", Single)),
            onboarding(choice::<DeveloperRole>("developer_role", "What kind of developer are you?", Single)),
            choice::<RoboticsExperience>("robotics_experience", "Robotics experience", Single),
            choice::<Language>("software_context.languages", "Programming languages", Multiple),
            FieldOptions {
                keys: Some(skills),
                ..choice::<Level>("software_context.skill_levels", "Skill levels", FieldKind::Map)
            },
            choice::<Level>("software_context.experience_level", "Overall programming level", Single),
            choice::<ExperienceYears>("software_context.experience_years", "Years of programming", Single),
            choice::<Tool>("software_context.preferred_tools", "Preferred tools", Multiple),
            choice::<Framework>("software_context.frameworks", "Frameworks and libraries", Multiple),
            choice::<Device>("hardware_context.devices", "Hardware you can use", Multiple),
            text("hardware_context.specifications.gpu", "GPU model"),
            text("hardware_context.specifications.ram", "Memory (RAM)"),
            choice::<Constraint>("hardware_context.constraints", "Constraints", Multiple),
            choice::<Architecture>(
                "hardware_context.architecture_familiarity",
                "Architectures you know",
                Multiple,
            ),
            choice::<LearningGoal>("learning_goals", "What do you want to learn?", Multiple),
        ],
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn spellings<T: CatalogValue>() -> Vec<&'static str> {
        T::ALL.iter().map(|v| v.as_str()).collect()
    }

    #[test]
    fn the_seeds_example_values_are_in_the_catalog() {
        assert!(Language::parse("Python").is_ok() && Language::parse("Cpp").is_ok());
        assert_eq!(spellings::<Level>(), ["Beginner", "Intermediate", "Advanced"]);
        assert!(Tool::parse("VSCode").is_ok() && Tool::parse("ROS").is_ok());
        for device in ["Simulation", "RobotArm", "GPU", "Jetson"] {
            assert!(Device::parse(device).is_ok(), "{device}");
        }
        assert!(Constraint::parse("NoInternet").is_ok());
        assert_eq!(
            spellings::<DeveloperRole>(),
            ["Frontend Developer", "Backend Developer", "Full Stack Developer", "None"]
        );
        assert_eq!(spellings::<RoboticsExperience>(), ["none", "simulation_only", "real_hardware"]);
        assert!(ExperienceYears::parse("3-5").is_ok());
        assert!(Framework::parse("ROS 2").is_ok() && Framework::parse("PyTorch").is_ok());
        assert!(Architecture::parse("x86_64").is_ok() && Architecture::parse("CUDA").is_ok());
        assert!(LearningGoal::parse("simulation").is_ok() && LearningGoal::parse("manipulation").is_ok());
    }

    #[test]
    fn values_are_case_sensitive_and_unknown_ones_are_named() {
        assert!(Language::parse("python").is_err());
        let message = Language::parse("Cobol").unwrap_err();
        assert!(message.starts_with("unknown value 'Cobol'"), "{message}");
        assert!(message.contains("Python, Cpp"), "{message}");
    }

    #[test]
    fn a_skill_names_exactly_one_language_or_framework() {
        let all: Vec<&str> = Skill::all().map(Skill::as_str).collect();
        let unique: HashSet<&str> = all.iter().copied().collect();
        assert_eq!(all.len(), unique.len(), "a language and a framework share a spelling");
        assert_eq!(Skill::parse("ROS 2").unwrap(), Skill::Framework(Framework::Ros2));
        assert_eq!(Skill::parse("Python").unwrap(), Skill::Language(Language::Python));
        assert!(Skill::parse("Docker").is_err());
    }

    #[test]
    fn every_enumerated_field_is_served_with_unique_values() {
        let options = options();
        let fields: Vec<&str> = options.fields.iter().map(|f| f.field).collect();
        for expected in [
            "software_context.languages",
            "software_context.skill_levels",
            "software_context.experience_level",
            "software_context.experience_years",
            "software_context.preferred_tools",
            "software_context.frameworks",
            "hardware_context.devices",
            "hardware_context.constraints",
            "hardware_context.architecture_familiarity",
            "python_proficiency",
            "developer_role",
            "robotics_experience",
            "learning_goals",
        ] {
            assert!(fields.contains(&expected), "{expected} is missing");
        }
        for field in &options.fields {
            let values: Vec<&str> = field.options.iter().flatten().map(|o| o.value).collect();
            let unique: HashSet<&str> = values.iter().copied().collect();
            assert_eq!(values.len(), unique.len(), "{} repeats a value", field.field);
            assert_eq!(field.kind == FieldKind::Text, field.options.is_none(), "{}", field.field);
        }
        let locked: Vec<&str> =
            options.fields.iter().filter(|f| f.immutable_once_onboarded).map(|f| f.field).collect();
        assert_eq!(locked, ["python_proficiency", "developer_role"]);
    }
}
