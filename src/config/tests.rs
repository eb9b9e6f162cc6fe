use super::*;
use clap::Parser;
use std::ffi::OsString;

#[derive(Parser)]
struct Cli {
    #[arg(long, global = true, default_value = "none.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    Serve(Box<Config>),
    Other(StoreSettings),
}

fn serve(args: &[&str], file: &str) -> anyhow::Result<Config> {
    serve_in(tempfile::tempdir().unwrap().path(), args, file)
}

/// `serve` with `file` as `<dir>/wsguard.toml`.
fn serve_in(dir: &Path, args: &[&str], file: &str) -> anyhow::Result<Config> {
    let path = dir.join("wsguard.toml");
    std::fs::write(&path, file).unwrap();
    let mut argv: Vec<OsString> =
        ["wsguard", "--config", path.to_str().unwrap(), "serve"].map(Into::into).into();
    argv.extend(args.iter().map(Into::into));
    let (cli, sections) = parse::<Cli>(argv)?;
    match cli.command {
        Command::Serve(mut config) => {
            config.sections = sections;
            config.validate().map(|()| *config)
        }
        Command::Other(_) => unreachable!(),
    }
}

#[test]
fn jwt_alg_comes_from_the_file_and_flags_win() {
    let config = serve(&[], r#"jwt_alg = "EdDSA""#).unwrap();
    assert_eq!(config.signing.alg(), jsonwebtoken::Algorithm::EdDSA);
    assert_eq!(config.signing.keys_dir(&config.store.data_dir), PathBuf::from("./wsguard-data").join("keys"));
    let config = serve(&["--jwt-alg", "RS256"], r#"jwt_alg = "EdDSA""#).unwrap();
    assert_eq!(config.signing.alg(), jsonwebtoken::Algorithm::RS256);
    assert_eq!(serve(&[], "").unwrap().signing.alg(), jsonwebtoken::Algorithm::HS256);
}

#[test]
fn defaults_file_values_and_lists() {
    let config = serve(&[], "").unwrap();
    assert_eq!(config.tokens.access_ttl, Duration::from_secs(15 * 60));
    assert_eq!(config.bind, SocketAddr::from(([127, 0, 0, 1], 8000)));
    assert!(config.allowed_origins.is_empty());
    assert_eq!(config.store.database_url(), "sqlite://./wsguard-data/wsguard.db");
    let file =
        "access_ttl = \"2m\"\nallowed_origins = [\"https://a\", \"https://b\"]\nmax_sockets_per_user = 3\n";
    let config = serve(&["--max-sockets-per-user=7"], file).unwrap();
    assert_eq!(config.tokens.access_ttl, Duration::from_secs(120));
    assert_eq!(config.allowed_origins, ["https://a", "https://b"]);
    assert_eq!(config.max_sockets_per_user, 7, "the flag wins over the file");
}

#[test]
fn unknown_algorithms_keys_and_bad_values_are_refused() {
    for alg in ["none", "HS512", "PS256", "rs256"] {
        let err = serve(&[], &format!("jwt_alg = \"{alg}\"")).unwrap_err();
        assert!(format!("{err:#}").contains("invalid value"), "{alg}: {err:#}");
    }
    let err = serve(&[], "jwt_alg = \"ES256\"\njwt_secret_file = \"secret\"").unwrap_err();
    assert!(err.to_string().contains("jwt_secret_file is for HS256"), "{err:#}");
    let err = serve(&[], "acess_ttl = \"2m\"").unwrap_err();
    assert!(
        format!("{err:#}").contains("unknown key \"acess_ttl\" (did you mean \"access_ttl\"?)"),
        "{err:#}"
    );
    let err = serve(&[], "[[namespace]]\nname = \"news\"").unwrap_err();
    assert!(format!("{err:#}").contains("(did you mean \"namespaces\"?)"), "{err:#}");
    let err = serve(&[], "colour = \"blue\"").unwrap_err();
    assert!(format!("{err:#}").ends_with("unknown key \"colour\""), "nothing close: {err:#}");
    let err = serve(&[], "access_ttl = \"soon\"").unwrap_err();
    assert!(format!("{err:#}").contains("invalid value"), "{err:#}");
    let err = serve(&[], "idle_timeout = \"10s\"").unwrap_err();
    assert!(err.to_string().contains("ping_interval must be shorter"), "{err:#}");
    let err = serve(&["--header-read-timeout=500ms"], "").unwrap_err();
    assert!(err.to_string().contains("header_read_timeout must be at least 1s"), "{err:#}");
    let err = serve(&[], "max_connections_per_address = 0").unwrap_err();
    assert!(err.to_string().contains("max_connections_per_address must be positive"), "{err:#}");
}

#[test]
fn connection_limits_have_defaults_and_come_from_every_layer() {
    let limits = serve(&[], "").unwrap().connections;
    assert_eq!(limits.header_read_timeout, Duration::from_secs(10));
    assert_eq!(limits.keep_alive_timeout, Duration::from_secs(60));
    assert_eq!((limits.max_connections, limits.max_connections_per_address), (10_000, 256));
    let file = "keep_alive_timeout = \"5s\"\nmax_connections = 100\n";
    let limits = serve(&["--max-connections-per-address=3"], file).unwrap().connections;
    assert_eq!(limits.keep_alive_timeout, Duration::from_secs(5));
    assert_eq!((limits.max_connections, limits.max_connections_per_address), (100, 3));
}

#[test]
fn trusted_proxies_are_networks_or_addresses_from_the_flag_or_the_file() {
    assert!(serve(&[], "").unwrap().trusted_proxies.is_empty(), "none by default");
    let nets = |config: Config| config.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>();
    let file = "trusted_proxies = [\"10.0.0.0/8\", \"::1\", \"192.168.1.7/24\", \"::ffff:172.16.0.0/108\"]";
    let config = serve(&[], file).unwrap();
    assert_eq!(nets(config), ["10.0.0.0/8", "::1/128", "192.168.1.0/24", "172.16.0.0/12"]);
    let config = serve(&["--trusted-proxies", "127.0.0.1, 2001:db8::/32"], file).unwrap();
    assert_eq!(nets(config), ["127.0.0.1/32", "2001:db8::/32"], "the flag wins over the file");
    for (bad, reason) in [
        ("10.0.0.0/33", "is not a CIDR"),
        ("proxy.example", "is not a CIDR"),
        ("", "is not a CIDR"),
        ("0.0.0.0/0", "trusts every peer"),
        ("::/0", "trusts every peer"),
    ] {
        // The flag's own parser checks the file's values (a bad flag exits as clap does).
        let err = serve(&[], &format!("trusted_proxies = [\"10.0.0.1\", \"{bad}\"]")).unwrap_err();
        assert!(format!("{err:#}").contains(reason), "{bad}: {err:#}");
    }
}

#[test]
fn the_tls_reload_interval_defaults_to_5s_and_is_0s_or_at_least_1s() {
    assert_eq!(serve(&[], "").unwrap().tls_reload_interval, Duration::from_secs(5));
    assert_eq!(serve(&[], "tls_reload_interval = \"0s\"").unwrap().tls_reload_interval, Duration::ZERO);
    assert_eq!(
        serve(&["--tls-reload-interval=1m"], "").unwrap().tls_reload_interval,
        Duration::from_secs(60)
    );
    let err = serve(&["--tls-reload-interval=200ms"], "").unwrap_err();
    assert!(
        err.to_string().contains("tls_reload_interval must be 0s (SIGHUP only) or at least 1s"),
        "{err:#}"
    );
}

#[test]
fn namespaces_and_issuers_come_from_the_file_with_least_privilege_defaults() {
    let config = serve(
        &[],
        r#"
        access_ttl = "5m"
        [[namespaces]]
        name = "news"
        subscribe = "any"
        history_ttl = "1h"
        [[namespaces]]
        name = "private"
        [[trusted_issuers]]
        secret_file = "/etc/app.secret"
        "#,
    )
    .unwrap();
    assert_eq!(config.tokens.access_ttl, Duration::from_secs(300), "flags of the file still apply");
    let [news, private] = &config.sections.namespaces[..] else { panic!("two namespaces") };
    assert_eq!(
        (news.subscribe, news.publish, news.history_ttl),
        (SubscribeRule::Any, PublishRule::Api, Duration::from_secs(3600))
    );
    assert_eq!(
        (private.subscribe, private.history_size, private.presence),
        (SubscribeRule::Claim, 100, false)
    );
    let issuer = &config.sections.trusted_issuers[0];
    assert_eq!(issuer.username_claim, "sub");
    assert_eq!(issuer.max_token_lifetime, Duration::from_secs(24 * 3600));
    let config = serve(
        &[],
        "[[trusted_issuers]]\nissuer = \"https://id.example/\"\njwks_url = \"https://id.example/jwks.json\"\n\
         audience = \"wsguard\"\nusername_claim = \"preferred_username\"\nmax_token_lifetime = \"1h\"",
    )
    .unwrap();
    let issuer = &config.sections.trusted_issuers[0];
    assert_eq!((issuer.name(), issuer.audience.as_deref()), ("https://id.example/", Some("wsguard")));
    assert_eq!(issuer.max_token_lifetime, Duration::from_secs(3600));
}

#[test]
fn bad_sections_are_refused_with_their_reason() {
    for (file, expected) in [
        ("[[namespaces]]\nname = \"a:b\"", "must be 1-32"),
        ("[[namespaces]]\nname = \"user\"", "built in"),
        ("[[namespaces]]\nname = \"a\"\n[[namespaces]]\nname = \"a\"", "twice"),
        ("[[namespaces]]\nname = \"a\"\nsubscribe = \"everyone\"", "unknown variant"),
        ("[[namespaces]]\nname = \"a\"\nhistory_tll = \"1h\"", "unknown field"),
        ("[[namespaces]]\nname = \"a\"\nsubscribe = \"proxy\"", "subscribe = \"proxy\" needs subscribe_proxy"),
        ("[[namespaces]]\nname = \"a\"\npublish = \"proxy\"", "publish = \"proxy\" needs publish_proxy"),
        ("[[namespaces]]\nname = \"a\"\nsubscribe_proxy = \"http://app/s\"", "subscribe is not \"proxy\""),
        (
            "[[namespaces]]\nname = \"a\"\nsubscribe = \"proxy\"\nsubscribe_proxy = \"ftp://app/s\"",
            "subscribe_proxy must be an http:// or https:// URL",
        ),
        ("[proxy]\nrpc = \"app/rpc\"", "proxy: rpc must be an http:// or https:// URL"),
        ("[[trusted_issuers]]\nsecret_file = \"a\"\n[[trusted_issuers]]\nsecret_file = \"b\"", "at most one"),
        ("[[trusted_issuers]]\nissuer = \"x\"", "exactly one of"),
        ("[[trusted_issuers]]\nissuer = \"x\"\njwks_url = \"u\"\nsecret_file = \"s\"", "exactly one of"),
        ("[[trusted_issuers]]\nissuer = \"\"\nsecret_file = \"s\"", "must not be empty"),
        ("[[trusted_issuers]]\nissuer = \"x\"\njwks_url = \"ftp://h/k\"", "http:// or https://"),
        ("[[trusted_issuers]]\nissuer = \"x\"\njwks_url = \"https://\"", "http:// or https://"),
        ("[[trusted_issuers]]\nissuer = \"x\"\nsecret_file = \"s\"\nmax_token_lifetime = \"0s\"", "at least 1s"),
        ("[[trusted_issuers]]\nissuer = \"x\"\nsecret_file = \"s\"\nmax_token_lifetime = \"long\"", "expected number"),
        ("[[trusted_issuers]]\nissuer = \"x\"\nsecret_file = \"s\"\nusername_claim = \"\"", "username_claim"),
        ("[[trusted_issuers]]\nissuer = \"x\"\nsecret_file = \"s\"\nalgorithm = \"HS256\"", "unknown field"),
        ("[[trusted_issuers]]\nissuer = \"x\"\nsecret_file = \"a\"\n[[trusted_issuers]]\nissuer = \"x\"\nsecret_file = \"b\"", "twice"),
        ("[[trusted_issuers]]\nissuer = \"wsguard\"\nsecret_file = \"a\"", "own issuer"),
        ("[webhooks]\nurl = \"ftp://app/hooks\"\nsecret_file = \"s\"", "webhooks: url must be an http:// or https:// URL"),
        ("[webhooks]\nurl = \"http://app/hooks\"", "missing field `secret_file`"),
        (
            "[webhooks]\nurl = \"http://app/hooks\"\nsecret_file = \"s\"\nevents = [\"channel_created\"]",
            "webhooks: events: unknown event \"channel_created\"; the events are channel_occupied, channel_vacated, presence_join, presence_leave",
        ),
        ("[webhooks]\nurl = \"http://app/hooks\"\nsecret_file = \"s\"\ntimeout = \"0s\"", "webhooks: timeout must be"),
        ("[webhooks]\nurl = \"http://app/hooks\"\nsecret_file = \"s\"\nretries = 3", "unknown field"),
    ] {
        let err = format!("{:#}", serve(&[], file).unwrap_err());
        assert!(err.contains(expected), "{file}: {err}");
    }
}

#[test]
fn relative_paths_in_the_file_are_its_folders_and_flags_keep_the_working_folders() {
    let dir = tempfile::tempdir().unwrap();
    let file = "data_dir = \"data\"\ntls_cert = \"/etc/wsguard/cert.pem\"\ntls_key = \"tls/key.pem\"\n\
                [[trusted_issuers]]\nsecret_file = \"app.secret\"\n\
                [webhooks]\nurl = \"http://app/hooks\"\nsecret_file = \"hooks.secret\"\n";
    let config = serve_in(dir.path(), &[], file).unwrap();
    assert_eq!(config.store.data_dir, dir.path().join("data"));
    assert_eq!(config.tls_cert.as_deref(), Some(Path::new("/etc/wsguard/cert.pem")), "absolute: as written");
    assert_eq!(config.tls_key, Some(dir.path().join("tls/key.pem")));
    assert_eq!(config.sections.trusted_issuers[0].secret_file, Some(dir.path().join("app.secret")));
    let webhooks = config.sections.webhooks.as_ref().unwrap();
    assert_eq!(webhooks.secret_file, dir.path().join("hooks.secret"));
    assert_eq!(webhooks.events, super::webhooks::EVENT_NAMES, "every event by default");
    let config = serve_in(dir.path(), &["--data-dir=elsewhere"], file).unwrap();
    assert_eq!(config.store.data_dir, Path::new("elsewhere"), "a flag is the working folder's");
}

#[test]
fn a_relative_sqlite_file_in_the_file_is_its_folders() {
    let folder = Path::new("/etc/wsguard");
    let resolved = |url: &str| super::file::sqlite_url_in(folder, url);
    assert_eq!(resolved("sqlite://w.db").as_deref(), Some("sqlite:///etc/wsguard/w.db"));
    assert_eq!(
        resolved("sqlite:data/w.db?mode=rwc").as_deref(),
        Some("sqlite:///etc/wsguard/data/w.db?mode=rwc")
    );
    for untouched in ["sqlite:///var/lib/w.db", "sqlite::memory:", "postgres://db/w", "sqlite://"] {
        assert_eq!(resolved(untouched), None, "{untouched}");
    }
}
