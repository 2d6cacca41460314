//! The operator's command: schema migrations and the book import, against `DATABASE_URL`
//! (in the cloud, Neon's direct URL rather than the pooled one).
//!
//! ```text
//! admin migrate                  apply the migrations in migrations/
//! admin import-chapters DIR      upsert every NN-slug.md chapter of DIR
//! admin openapi                  print the OpenAPI document (openapi.json), no database
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use primer_shared::domain::book::{self, ImportOutcome};
use primer_shared::error::ErrorChain;
use primer_shared::infra::db;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

const USAGE: &str = "usage: admin migrate | admin import-chapters DIR | admin openapi";

/// What the operator asked for.
enum Command {
    Migrate,
    ImportChapters(PathBuf),
    OpenApi,
}

impl Command {
    fn parse(args: &[String]) -> Option<Self> {
        match args {
            [cmd] if cmd == "migrate" => Some(Self::Migrate),
            [cmd, dir] if cmd == "import-chapters" => Some(Self::ImportChapters(dir.into())),
            [cmd] if cmd == "openapi" => Some(Self::OpenApi),
            _ => None,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = Command::parse(&args) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };

    match run(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("admin: {}", ErrorChain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Migrate => {
            db::MIGRATOR.run(&connect().await?).await?;
            println!("migrations applied");
        }
        Command::ImportChapters(dir) => {
            for chapter in book::import_dir(&connect().await?, &dir).await? {
                let what = match chapter.outcome {
                    ImportOutcome::Created => "created, version 1".to_owned(),
                    ImportOutcome::Updated { version } => format!("changed, now version {version}"),
                    ImportOutcome::Unchanged { version } => format!("unchanged, version {version}"),
                };
                println!("chapter {} {}: {what}", chapter.id, chapter.slug);
            }
        }
        Command::OpenApi => print!("{}", local::openapi::json()),
    }
    Ok(())
}

async fn connect() -> Result<PgPool, Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is not set")?;
    Ok(PgPoolOptions::new().max_connections(2).connect(&url).await?)
}
