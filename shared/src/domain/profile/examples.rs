//! The example profiles of docs/api.md and the guest-chat model, written once for the tests of every crate
//! and the OpenAPI document.

use serde_json::{Value, json};

use super::input::ProfileInput;
use super::store::UserProfile;

/// docs/api.md's example profile: every field set, onboarded.
pub fn api_example() -> Value {
    json!({
        "software_context": {
            "languages": ["Python", "Cpp"],
            "skill_levels": {"Python": "Intermediate", "ROS 2": "Beginner"},
            "experience_level": "Intermediate",
            "experience_years": "3-5",
            "preferred_tools": ["VSCode", "ROS"],
            "frameworks": ["ROS 2", "PyTorch"]
        },
        "hardware_context": {
            "devices": ["Simulation", "RobotArm", "Jetson"],
            "specifications": {"gpu": "RTX3060", "ram": "16GB"},
            "constraints": ["NoInternet"],
            "architecture_familiarity": ["x86_64", "CUDA"]
        },
        "python_proficiency": "Intermediate",
        "developer_role": "Backend Developer",
        "robotics_experience": "simulation_only",
        "learning_goals": ["simulation", "manipulation"]
    })
}

/// [`api_example`] as `GET /api/profile` shows it once stored: canonical (sets sorted), onboarded,
/// with its hash, made by the code that stores a profile.
pub fn stored_example() -> Value {
    let input: ProfileInput = serde_json::from_value(api_example()).expect("the example is a profile");
    let profile = input.parse().expect("the example profile is valid");
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-29T09:59:30Z").expect("a time").to_utc();
    let stored = UserProfile {
        is_onboarded: profile.is_onboarded(),
        profile_hash: profile.hash(),
        profile,
        created_at: at,
        updated_at: at,
    };
    serde_json::to_value(stored).expect("a profile serializes")
}

/// The guest-chat model's two example documents, unchanged.
pub fn seed_000() -> Value {
    json!({
        "software_context": {
            "languages": ["Python", "Cpp"],
            "experience_level": "Intermediate",
            "preferred_tools": ["VSCode", "ROS"]
        },
        "hardware_context": {
            "devices": ["Simulation", "RobotArm"],
            "specifications": {"gpu": "RTX3060", "ram": "16GB"},
            "constraints": ["NoInternet"]
        }
    })
}
