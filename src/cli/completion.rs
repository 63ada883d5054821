//! `limactl completion bash|zsh|fish`: a shell completion script, generated
//! from the same clap definition that parses the arguments (so it never
//! lags behind a flag).

use clap::CommandFactory;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let shell = match a.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut super::Cli::command(), "limactl", &mut script);
    std::io::Write::write_all(&mut super::out::stdout(), &script)?;
    Ok(0)
}
