/// Allocation is a large part of a delivery's cost (frames, events, JSON): see Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    wsguard::logs::init();
    match wsguard::cli::run(std::env::args_os().collect()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // Unlike eprintln!, a closed stderr does not turn the failure into a panic.
            let _ =
                std::io::Write::write_all(&mut std::io::stderr(), format!("wsguard: {err:#}\n").as_bytes());
            std::process::ExitCode::FAILURE
        }
    }
}
