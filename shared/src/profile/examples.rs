//! The example profiles of docs/api.md and the guest-chat model, written once for the tests of every crate
//! and the OpenAPI document.

use serde_json::{Value, json};

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
