//! `eikoloc train` in a build without the `train` feature: burn is not compiled in, so the
//! subcommand only says how to get it.

/// Arguments are accepted and ignored so that any `eikoloc train ...` line gets the message.
#[derive(clap::Args)]
pub struct Args {
    /// Ignored: this build has no trainer.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

/// Fails with the rebuild instruction.
pub fn run(_a: Args) -> anyhow::Result<()> {
    anyhow::bail!(
        "this eikoloc was built without the trainer; rebuild with \
         `cargo build --release --features train` and run `eikoloc train` again"
    )
}
