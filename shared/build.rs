//! `sqlx::migrate!` embeds migrations/ at compile time; a new or edited migration must rebuild
//! the crate, which cargo only knows when told.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
