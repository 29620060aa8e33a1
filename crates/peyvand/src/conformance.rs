//! `peyvand conformance --target URL`: the protocol's conformance kit against one provider
//! (`peyvand_interconnect::conformance`), one line per requirement checked.

use std::io::Write;
use std::time::Duration;

use anyhow::{Result, bail};
use peyvand_interconnect::conformance::{KitConfig, run as run_kit};

use crate::cli::OutputFormat;
use crate::registry::{Connection, admin_token};

#[derive(Debug, clap::Args)]
pub struct ConformanceArgs {
    /// The provider to check: its endpoint as the registry's directory lists it, or its id.
    #[arg(long)]
    pub target: String,
    #[command(flatten)]
    pub connection: Connection,
    /// How long to wait for the target to see a change of the directory (the kit's licence,
    /// its suspension): more than the target's directory refresh interval.
    #[arg(long, default_value_t = 180)]
    pub wait_secs: u64,
}

pub async fn run(output: OutputFormat, args: ConformanceArgs) -> Result<()> {
    let config = KitConfig {
        target: args.target.clone(),
        registry: crate::registry::client(
            &args.connection.registry,
            Some(admin_token(&args.connection)?),
            args.connection.registry_ca.as_deref(),
        )?,
        wait: Duration::from_secs(args.wait_secs),
    };
    let outcomes = run_kit(&config).await?;
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    let mut out = std::io::stdout().lock();
    match output {
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&outcomes)?)?,
        OutputFormat::Text => {
            for o in &outcomes {
                let verdict = if o.passed { "PASS" } else { "FAIL" };
                write!(out, "{verdict} [{}] {}", o.requirement, o.check)?;
                if o.passed { writeln!(out)? } else { writeln!(out, ": {}", o.detail)? }
            }
            writeln!(out, "{} of {} checks passed against {}", outcomes.len() - failed, outcomes.len(), args.target)?;
        }
    }
    out.flush()?;
    if failed > 0 {
        bail!("{failed} conformance check(s) failed");
    }
    Ok(())
}
