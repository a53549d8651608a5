//! Helpers shared by the reservoir's integration tests.

use tdsql_reservoir::{ConnectConfig, StaticPassword};

/// Connect settings and password of a harness database.
pub(crate) fn local(config: &tokio_postgres::Config) -> (ConnectConfig, StaticPassword) {
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("the test PostgreSQL is expected on TCP, got {other:?}"),
    };
    let password =
        String::from_utf8(config.get_password().expect("the URL has a password").to_vec()).unwrap();
    let settings = ConnectConfig::local(
        host,
        config.get_ports()[0],
        config.get_user().expect("the URL has a user"),
        config.get_dbname().expect("the URL has a database"),
    );
    (settings, StaticPassword::new(password))
}
