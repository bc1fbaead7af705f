//! `ccgate init [DIR]`: a commented `ccgate.toml`, a sample `directory.csv` and the data
//! folders, ready for `ccgate run --config DIR/ccgate.toml`. Never overwrites a file.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::samples::{CONFIG_TOML, DIRECTORY_CSV};

/// Writes the files into `dir`.
pub fn run(dir: &Path) -> anyhow::Result<ExitCode> {
    let config = dir.join("ccgate.toml");
    let data = dir.join("ccgate-data");
    let directory = data.join("directory.csv");
    for existing in [&config, &directory] {
        if existing.exists() {
            bail!(
                "{}: already exists; ccgate init never overwrites (remove it or pick another folder)",
                existing.display()
            );
        }
    }
    for folder in ["legacy/outbound", "legacy/inbound", "modern"] {
        let path = data.join(folder);
        std::fs::create_dir_all(&path)
            .with_context(|| format!("{}: cannot create folder", path.display()))?;
    }
    std::fs::write(&config, CONFIG_TOML)
        .with_context(|| format!("{}: cannot write", config.display()))?;
    std::fs::write(&directory, DIRECTORY_CSV)
        .with_context(|| format!("{}: cannot write", directory.display()))?;
    println!("wrote {}", config.display());
    println!("wrote {}", directory.display());
    println!(
        "created {}/{{legacy/outbound,legacy/inbound,modern}}",
        data.display()
    );
    println!("next: ccgate run --config {}", config.display());
    Ok(ExitCode::SUCCESS)
}
