//! Connecting: unknown schemes, a database that is down at start, the scheme choosing the backend,
//! and an outage while running.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};
use wsguard::store::{self, DynStore, PostgresStore, StoreError};

use crate::{admin_connection, drop_schema, fresh_schema, postgres_url, user};

#[tokio::test]
async fn connect_rejects_unknown_schemes_without_echoing_the_url() {
    for url in ["mysql://root:s3cret@db/wsguard", "/var/lib/wsguard.db"] {
        let err = match store::connect(url).await {
            Ok(_) => panic!("{url} accepted"),
            Err(err) => format!("{err:#}"),
        };
        assert!(err.contains("unsupported database URL"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}

/// A database that is down at start: `connect` fails within a few seconds, with a clear message
/// and without the password.
#[tokio::test]
async fn connect_fails_fast_when_postgres_is_down() {
    // A port nobody listens on: bind one, then free it.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let url = format!("postgres://wsguard:s3cret@127.0.0.1:{port}/wsguard");
    let err = match store::connect(&url).await {
        Ok(_) => panic!("connected to nothing"),
        Err(err) => format!("{err:#}"),
    };
    assert!(started.elapsed() < Duration::from_secs(15), "took too long");
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

/// `store::connect` picks PostgreSQL for `postgres://` and `postgresql://`, and honours a
/// search path given in the URL.
#[tokio::test]
async fn connect_selects_postgres_by_scheme() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let schema = fresh_schema();
    let mut admin = admin_connection(&url).await;
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\"")).execute(&mut admin).await.unwrap();
    let outcome = tokio::spawn({
        let (url, schema) = (url.clone(), schema.clone());
        async move {
            let separator = if url.contains('?') { '&' } else { '?' };
            for scheme_url in [url.clone(), url.replacen("postgres://", "postgresql://", 1)] {
                let with_path = format!("{scheme_url}{separator}options=-c%20search_path%3D{schema}");
                let store = store::connect(&with_path).await.expect("connect");
                store.ping().await.unwrap();
                if store.user("alice").await.unwrap().is_none() {
                    store.create_user(&user("alice")).await.unwrap();
                }
            }
        }
    })
    .await;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables \
         WHERE table_schema = $1 AND table_name IN ('users', 'refresh_families', 'revocations', 'channels', 'publications')",
    )
    .bind(&schema)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    let _ = admin.close().await;
    drop_schema(&url, &schema).await;
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
    assert_eq!(tables, 5, "the migrations ran in the URL's schema");
}

/// A TCP relay in front of PostgreSQL that can be cut, to take the database away from a running
/// store.
struct Relay {
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Relay {
    async fn start(listen: &str, upstream: (String, u16)) -> (Relay, u16) {
        let listener = TcpListener::bind(listen).await.expect("relay listens");
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let connections = connections.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let upstream = upstream.clone();
                    let relay = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().unwrap().push(relay.abort_handle());
                }
            }
        });
        (Relay { accept, connections }, port)
    }

    /// Stops listening and drops every relayed connection.
    async fn cut(self) {
        self.accept.abort();
        let _ = self.accept.await;
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

/// An outage of a running store answers `Unavailable` (HTTP 503) within a few seconds rather than
/// hanging or failing as an internal error, and the store recovers once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_unavailable_then_recovers() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let schema = fresh_schema();
    let mut admin = admin_connection(&url).await;
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\"")).execute(&mut admin).await.unwrap();
    let _ = admin.close().await;

    let outcome = tokio::spawn({
        let (url, schema) = (url.clone(), schema.clone());
        async move {
            let target = PgConnectOptions::from_str(&url).unwrap();
            let upstream = (target.get_host().to_owned(), target.get_port());
            let (relay, port) = Relay::start("127.0.0.1:0", upstream.clone()).await;
            let options =
                target.clone().host("127.0.0.1").port(port).options([("search_path", schema.as_str())]);
            let store: DynStore = Arc::new(PostgresStore::connect_with(options).await.unwrap());
            store.create_user(&user("alice")).await.unwrap();

            relay.cut().await;
            for _ in 0..2 {
                let started = Instant::now();
                let outcome = store.user("alice").await;
                assert!(matches!(outcome, Err(StoreError::Unavailable(_))), "{outcome:?}");
                assert!(started.elapsed() < Duration::from_secs(10), "took too long");
            }
            let ping = store.ping().await;
            assert!(matches!(ping, Err(StoreError::Unavailable(_))), "{ping:?}");

            // The database comes back on the same address.
            let (relay, _) = Relay::start(&format!("127.0.0.1:{port}"), upstream).await;
            store.ping().await.expect("recovered");
            assert!(store.user("alice").await.unwrap().is_some());
            relay.cut().await;
        }
    })
    .await;
    drop_schema(&url, &schema).await;
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}
