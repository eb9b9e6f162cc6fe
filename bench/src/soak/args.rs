//! The soak's knobs, and the checks that they make sense before anything connects.

use anyhow::{ensure, Context};
use clap::Args;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Most sockets a soak opens (the generator and the server share one machine's descriptors).
const MAX_SOCKETS: usize = 50_000;
/// Longest run, in seconds.
const MAX_DURATION_S: f64 = 24.0 * 3600.0;

#[derive(Args, Debug, Clone)]
pub struct SoakArgs {
    /// Address of the server (loopback only)
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,
    /// Another node of the same cluster (repeatable): sockets and API publications are spread
    /// over --addr and these; logins, the pool and wrong passwords stay on --addr
    #[arg(long = "node", value_name = "HOST:PORT")]
    pub nodes: Vec<SocketAddr>,
    /// The process id of the server at --addr, for its VmRSS in /proc/PID/status
    #[arg(long)]
    pub pid: u32,
    /// Seconds of soak after the ramp-up
    #[arg(long, default_value_t = 600.0)]
    pub duration: f64,
    /// Chat sockets held open, the observers (one per room) included
    #[arg(long, default_value_t = 5000)]
    pub sockets: usize,
    /// Rooms the sockets are spread over
    #[arg(long, default_value_t = 50)]
    pub rooms: usize,
    /// Members closed by the client a second (their slots reconnect)
    #[arg(long, default_value_t = 10.0)]
    pub churn: f64,
    /// Share of connections that ignore `expiring` and must be closed with 4001
    #[arg(long, default_value_t = 0.1)]
    pub no_refresh_share: f64,
    /// Chat publications (`send`) a second, from random members
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// File holding a server-API key with the `publish` scope: API publications
    /// (`POST /api/publish`) at --api-rate, checked at the observers like chat sends
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// API publications a second (with --api-key-file), spread over the nodes
    #[arg(long, default_value_t = 5.0)]
    pub api_rate: f64,
    /// The fault log a script writes during the run (`<unix ms> redis-down|redis-up|
    /// postgres-down|postgres-up|node-down N|node-up N` a line): errors within a fault's window
    /// are the fault's, not failures; the report gets a section per fault
    #[arg(long, value_name = "FILE")]
    pub faults: Option<PathBuf>,
    /// Seconds after a fault ends that its window still covers (reconnects, late deliveries)
    #[arg(long, default_value_t = 20.0)]
    pub fault_grace: f64,
    /// A user to log in as, NAME:PASSWORD (repeatable); members and observers alternate between them
    #[arg(long = "user", value_name = "NAME:PASSWORD", default_values_t = [
        "johndoe:secret".to_owned(),
        "janedoe:secret2".to_owned(),
    ])]
    pub users: Vec<String>,
    /// Logins per user in the token pool
    #[arg(long, default_value_t = 4)]
    pub logins_per_user: usize,
    /// Seconds between password logins replacing a login of the pool (0: none)
    #[arg(long, default_value_t = 10.0)]
    pub login_every: f64,
    /// Seconds between refreshes of the pool's logins (default: a third of the access lifetime)
    #[arg(long)]
    pub pool_refresh_every: Option<f64>,
    /// Logins with a wrong password a second (0: none)
    #[arg(long, default_value_t = 1.0)]
    pub wrong_logins_per_sec: f64,
    /// Loopback source address of the wrong logins
    #[arg(long, default_value = "127.0.0.2")]
    pub wrong_login_from: IpAddr,
    /// Seconds between readings of the server's VmRSS
    #[arg(long, default_value_t = 2.0)]
    pub rss_every: f64,
    /// Sockets connecting at a time
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Most seconds the ramp-up to --sockets may take (default: 60 + sockets / 25)
    #[arg(long)]
    pub ramp_timeout: Option<f64>,
    /// Most seconds to wait after the run for acks and deliveries still under way
    #[arg(long, default_value_t = 15.0)]
    pub drain: f64,
    /// Seconds between closing every socket and the last memory reading
    #[arg(long, default_value_t = 5.0)]
    pub settle: f64,
    /// Messages put in each room before the run (each acked and checked like the others), so that
    /// joins get a full `history` from the start (50: a join's history)
    #[arg(long, default_value_t = 50)]
    pub prefill: usize,
    /// Seconds a connect, welcome and join may take
    #[arg(long, default_value_t = 10.0)]
    pub join_timeout: f64,
}

impl SoakArgs {
    /// Every node's address, --addr first.
    pub(super) fn node_addrs(&self) -> Vec<SocketAddr> {
        std::iter::once(self.addr).chain(self.nodes.iter().copied()).collect()
    }
}

/// Checks the knobs; returns the users as (name, password).
pub(super) fn check_args(args: &SoakArgs) -> anyhow::Result<Vec<(String, String)>> {
    ensure!(
        args.node_addrs().iter().all(|a| a.ip().is_loopback()),
        "--addr and --node must be loopback addresses: the soak stays on this machine"
    );
    ensure!(args.nodes.len() <= 8, "at most 8 --node");
    ensure!(args.wrong_login_from.is_loopback(), "--wrong-login-from must be a loopback address");
    ensure!(args.rooms >= 1 && args.rooms <= 1000, "--rooms must be 1-1000");
    ensure!(
        args.sockets > args.rooms && args.sockets <= MAX_SOCKETS,
        "--sockets must be more than --rooms (one observer each) and at most {MAX_SOCKETS}"
    );
    ensure!(
        args.duration > 0.0 && args.duration <= MAX_DURATION_S,
        "--duration must be 0-{MAX_DURATION_S} s"
    );
    ensure!(args.rate > 0.0 && args.rate <= 10_000.0, "--rate must be above 0 and at most 10000");
    ensure!(args.api_rate > 0.0 && args.api_rate <= 1000.0, "--api-rate must be above 0 and at most 1000");
    ensure!((0.0..=600.0).contains(&args.fault_grace), "--fault-grace: 0-600 s");
    ensure!(args.churn >= 0.0 && args.churn <= 10_000.0, "--churn must be 0-10000");
    ensure!(
        args.wrong_logins_per_sec >= 0.0 && args.wrong_logins_per_sec <= 1000.0,
        "--wrong-logins-per-sec: 0-1000"
    );
    ensure!((0.0..=1.0).contains(&args.no_refresh_share), "--no-refresh-share must be 0-1");
    ensure!(
        args.rss_every > 0.0 && args.logins_per_user >= 1 && args.concurrency >= 1,
        "bad --rss-every, --logins-per-user or --concurrency"
    );
    ensure!(
        args.drain >= 0.0 && args.drain <= 600.0 && args.settle >= 0.0 && args.settle <= 600.0,
        "--drain and --settle: 0-600 s"
    );
    ensure!(args.join_timeout > 0.0 && args.join_timeout <= 600.0, "--join-timeout: above 0, at most 600 s");
    ensure!(args.prefill <= 1000, "--prefill: at most 1000 messages per room");
    ensure!(
        args.ramp_timeout.is_none_or(|t| t > 0.0 && t <= 3600.0)
            && args.pool_refresh_every.is_none_or(|t| (1.0..=3600.0).contains(&t))
            && (0.0..=3600.0).contains(&args.login_every),
        "--ramp-timeout, --pool-refresh-every and --login-every: at most an hour"
    );
    let users = args
        .users
        .iter()
        .map(|u| {
            u.split_once(':').map(|(n, p)| (n.to_owned(), p.to_owned())).context("--user is NAME:PASSWORD")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    ensure!(!users.is_empty(), "at least one --user");
    Ok(users)
}

/// The API key from `file`: its only line. Kept off the command line, where `ps` shows it.
pub(crate) fn read_api_key(file: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let key = text.trim();
    ensure!(
        !key.is_empty() && !key.contains(char::is_whitespace),
        "{}: expected one API key on one line",
        file.display()
    );
    Ok(key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> anyhow::Result<Vec<(String, String)>> {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            soak: SoakArgs,
        }
        let mut argv = vec!["soak", "--pid", "1"];
        argv.extend_from_slice(extra);
        check_args(&Cli::parse_from(argv).soak)
    }

    #[test]
    fn only_loopback_addresses_are_accepted() {
        assert!(parse(&[]).is_ok());
        assert!(parse(&["--addr", "10.0.0.1:8000"]).is_err());
        assert!(parse(&["--node", "127.0.0.1:8001"]).is_ok());
        assert!(parse(&["--node", "10.0.0.2:8001"]).is_err());
        assert!(parse(&["--wrong-login-from", "192.168.1.2"]).is_err());
        assert!(parse(&["--sockets", "50"]).is_err(), "no room left for members");
        assert!(parse(&["--user", "nopassword"]).is_err());
        assert!(parse(&["--api-rate", "0"]).is_err());
    }

    #[test]
    fn the_api_key_file_holds_one_key() {
        let dir = std::env::temp_dir().join(format!("soak-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("key");
        std::fs::write(&file, "wsg_abc\n").expect("write");
        assert_eq!(read_api_key(&file).expect("one key"), "wsg_abc");
        std::fs::write(&file, "\n").expect("write");
        assert!(read_api_key(&file).is_err(), "empty");
        std::fs::write(&file, "wsg_a wsg_b\n").expect("write");
        assert!(read_api_key(&file).is_err(), "two words");
        assert!(read_api_key(&dir.join("absent")).is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
