//! `pastiche`: the command line of the Pastiche appliance.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pastiche::cli;

/// Exit code: the command failed.
const EXIT_FAILED: u8 = 1;

#[derive(Parser)]
#[command(
    name = "pastiche",
    version,
    about = "Peer-to-peer backup for NAS boxes"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the chunks of files: OFFSET LENGTH HANDLE CHUNKID per line.
    Chunk {
        /// Files to chunk, in order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the main job on built-in defaults, in a local demo folder.
    Demo {
        /// Where to put the demo's files.
        #[arg(long, default_value = "pastiche-demo")]
        dir: PathBuf,
    },
    /// Low-level tools for inspecting the format.
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
    },
}

#[derive(Subcommand)]
enum DebugCommand {
    /// Seal all of IN as one chunk into OUT and print its chunkId.
    Seal {
        /// Plaintext chunk (at most 65,536 bytes).
        input: PathBuf,
        /// Where to write the sealed chunk.
        output: PathBuf,
    },
    /// Open a sealed chunk with its handle.
    Open {
        /// Sealed chunk.
        input: PathBuf,
        /// Where to write the plaintext.
        output: PathBuf,
        /// The chunk's handle, 40 hex digits.
        #[arg(long)]
        handle: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Chunk { files } => {
            match cli::chunk::run(&files, &mut io::BufWriter::new(io::stdout().lock())) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::from(EXIT_FAILED),
                Err(e) => Err(anyhow::Error::new(e).context("cannot write output")),
            }
        }
        Command::Demo { dir } => cli::demo::run(&dir),
        Command::Debug { command } => match command {
            DebugCommand::Seal { input, output } => {
                cli::debug::seal(&input, &output).map(|id| println!("{id}"))
            }
            DebugCommand::Open {
                input,
                output,
                handle,
            } => cli::debug::open(&input, &output, &handle),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pastiche: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}
