//! Where the passphrase comes from: `PASTICHE_PASSWORD`,
//! `PASTICHE_PASSWORD_FILE`, or a prompt when stdin is a terminal.

use std::io::IsTerminal;

use anyhow::{bail, Context, Result};

/// Environment variable holding the passphrase itself.
pub const ENV_PASSWORD: &str = "PASTICHE_PASSWORD";
/// Environment variable naming a file whose first line is the passphrase.
pub const ENV_PASSWORD_FILE: &str = "PASTICHE_PASSWORD_FILE";

/// Reads the passphrase. With `confirm`, a prompt asks twice (for `init`).
pub fn read_passphrase(confirm: bool) -> Result<String> {
    if let Ok(p) = std::env::var(ENV_PASSWORD) {
        return non_empty(p);
    }
    if let Ok(path) = std::env::var(ENV_PASSWORD_FILE) {
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {ENV_PASSWORD_FILE} {path}"))?;
        return non_empty(text.lines().next().unwrap_or("").to_string());
    }
    if !std::io::stdin().is_terminal() {
        bail!("no passphrase: set {ENV_PASSWORD} or {ENV_PASSWORD_FILE}, or run on a terminal");
    }
    let first = rpassword::prompt_password("passphrase: ").context("cannot read the passphrase")?;
    if confirm {
        let again = rpassword::prompt_password("passphrase again: ").context("cannot read the passphrase")?;
        if again != first {
            bail!("the passphrases do not match");
        }
    }
    non_empty(first)
}

fn non_empty(p: String) -> Result<String> {
    if p.is_empty() {
        bail!("the passphrase is empty");
    }
    Ok(p)
}
